"""TensorBoard event files, written without tensorboard: a run's per-epoch metrics as scalars and its stage changes
as text, for ``tensorboard --logdir DIR``.

Step = the epoch counted from 1. Scalars: ``acc/train``, ``acc/test``, ``loss/train``, ``loss/test``, ``lr``, the
other numeric fields of the metrics line (``epoch_seconds``, …), every numeric field of a nested dict (PST's
detector values: ``pst/train-acc``, ``pst/acm1/s1``, …) and per-layer SAL (``sal/NN.LAYER``, shallow to deep). Text:
``stage`` (the stage a staged defense is in, when it changes) and ``events`` (its transitions, with their actions
from ``pst.json`` when the run directory has one; read generically: dicts with epoch, stage and actions).

Each epoch goes to its own file ``events.out.tfevents.EEEEEE.pst_fast`` (written atomically, so a resumed run
rewrites an epoch instead of appending it twice, and TensorBoard reads the files in name order while a run goes on).
The format: TFRecord framing (length, masked CRC-32C of it, an ``Event`` protobuf, its masked CRC-32C), the
protobuf encoded here by hand; tests read the files back with tensorboard's own ``EventAccumulator``.
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from .io import atomic_write

ALIASES = {"train_acc": "acc/train", "test_acc": "acc/test", "val_acc": "acc/val", "train_loss": "loss/train", "test_loss": "loss/test",
           "val_loss": "loss/val"}
SKIPPED = ("epoch", "step")  # the axis, not a curve


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of TFRecord framing."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    c = crc32c(data)
    return struct.pack("<I", (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, bytes, messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _scalar(tag: str, value: float) -> bytes:
    """Summary.Value{tag, simple_value}."""
    return _field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value)


def _text(tag: str, text: str) -> bytes:
    """Summary.Value{tag, metadata: text plugin, tensor: scalar DT_STRING}."""
    metadata = _field(1, _field(1, b"text"))  # SummaryMetadata.plugin_data.plugin_name
    tensor = _varint(1 << 3) + _varint(7) + _field(2, b"") + _field(8, text.encode())  # dtype DT_STRING, shape [], string_val
    return _field(1, tag.encode()) + _field(9, metadata) + _field(8, tensor)


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    """One TFRecord holding Event{wall_time, step, body} (body: file_version or summary, already encoded)."""
    data = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3) + _varint(step) + body
    header = struct.pack("<Q", len(data))
    return header + _masked(header) + data + _masked(data)


def write_events(path: str | Path, step: int, scalars: dict[str, float], texts: dict[str, str], wall_time: float | None = None) -> Path:
    """An event file at ``path`` holding ``scalars`` and ``texts`` at ``step`` (atomically)."""
    t = time.time() if wall_time is None else wall_time
    values = b"".join(_field(1, _scalar(k, v)) for k, v in scalars.items()) + b"".join(_field(1, _text(k, v)) for k, v in texts.items())
    blob = _event(t, 0, _field(3, b"brain.Event:2")) + _event(t, step, _field(5, values))
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))


def _short(layer: str) -> str:
    return layer.removeprefix("blocks.").removesuffix(".weight")


def scalars_of(line: dict, layers: list[str] | None = None) -> dict[str, float]:
    """The scalars of one metrics.jsonl line: numbers, numbers in nested dicts (``key/field``) and the per-layer SAL list."""
    out = {}
    for k, v in line.items():
        if k in SKIPPED:
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[ALIASES.get(k, k)] = float(v)
        elif isinstance(v, dict):
            out.update({f"{k}/{f}": float(x) for f, x in v.items() if isinstance(x, (int, float)) and not isinstance(x, bool)})
        elif k == "sal" and isinstance(v, list):
            names = layers if layers and len(layers) == len(v) else [str(i) for i in range(len(v))]
            out.update({f"sal/{i:02d}.{_short(n)}": float(x) for i, (n, x) in enumerate(zip(names, v))})
    return out


def event_text(e) -> str:
    """A stage transition as one line: a dict with epoch, stage and actions (others shown as key=value), or a string."""
    if not isinstance(e, dict):
        return str(e)
    head = f"stage {e.get('stage', '?')} at epoch {e['epoch']:.2f}" if isinstance(e.get("epoch"), (int, float)) else f"stage {e.get('stage', '?')}"
    extra = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={'+'.join(map(str, v))}" if isinstance(v, list) else f"{k}={v}"
             for k, v in e.items() if k not in ("stage", "epoch", "actions") and v is not None]
    actions = e.get("actions") or []
    return head + (f" ({', '.join(extra)})" if extra else "") + (": " + "; ".join(map(str, actions)) if actions else "")


def events_in_epoch(events: list, epoch: int) -> list:
    """The transitions of ``events`` (dicts with a fractional ``epoch``) that happened during 0-based ``epoch``."""
    import math

    return [e for e in events if isinstance(e, dict) and isinstance(e.get("epoch"), (int, float))
            and max(0, math.ceil(e["epoch"]) - 1) == epoch]


def epoch_texts(line: dict, previous_stage: str | None, events: list | None) -> dict[str, str]:
    """Text summaries of one epoch: the stage when it changed, and the transitions (``events``: from pst.json, else the line's own)."""
    texts = {}
    stage = line.get("pst_stage")
    if isinstance(stage, str) and stage != previous_stage:
        texts["stage"] = stage
    happened = events_in_epoch(events, line["epoch"]) if events is not None else line.get("events", [])
    if happened:
        texts["events"] = "\n\n".join(event_text(e) for e in happened)
    return texts


def run_extras(run_dir: str | Path | None) -> tuple[list[str] | None, list | None]:
    """(SAL layer names from sal.json, transitions from pst.json) of a run directory; None where absent or unreadable."""
    layers = events = None
    if run_dir:
        for name in ("sal.json", "pst.json"):
            try:
                doc = json.loads((Path(run_dir) / name).read_text())
            except (OSError, ValueError):
                continue
            if name == "sal.json" and isinstance(doc.get("layers"), list):
                layers = doc["layers"]
            elif name == "pst.json" and isinstance(doc.get("events"), list):
                events = doc["events"]
    return layers, events


def epoch_file(logdir: str | Path, epoch: int) -> Path:
    return Path(logdir) / f"events.out.tfevents.{epoch + 1:06d}.pst_fast"


def write_epoch(logdir: str | Path, line: dict, previous: dict | None = None, run_dir: str | Path | None = None) -> Path:
    """The event file of the metrics line ``line`` (``previous``: the line before it, for stage changes)."""
    layers, events = run_extras(run_dir)
    return write_events(epoch_file(logdir, line["epoch"]), line["epoch"] + 1, scalars_of(line, layers),
                        epoch_texts(line, (previous or {}).get("pst_stage"), events))


def export_run(lines: list[dict], logdir: str | Path, run_dir: str | Path | None = None) -> list[Path]:
    """Event files of every epoch of a run (its metrics lines; ``run_dir`` adds SAL layer names and PST's transitions)."""
    return [write_epoch(logdir, line, lines[i - 1] if i else None, run_dir) for i, line in enumerate(lines)]


class TensorBoardLog:
    """Trainer epoch-end hook of ``train --tensorboard DIR``: the epoch's event file (runs after the other hooks, so
    the line holds SAL and the defense's fields); ``history``: the metrics lines of the epochs before (a resumed run)."""

    def __init__(self, logdir: str, run_dir: Path | None, history: list[dict]):
        self.logdir, self.run_dir, self.previous = logdir, run_dir, history[-1] if history else None

    def __call__(self, state) -> None:
        write_epoch(self.logdir, state.log, self.previous, self.run_dir)
        self.previous = dict(state.log)
