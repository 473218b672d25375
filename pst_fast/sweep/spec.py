"""The sweep spec: one TOML file naming a grid (datasets × attacks × defenses × models × seeds), the training
budget, the metrics and the resources. It is parsed and checked whole before anything runs; every error is
one line naming the spec's line and key.

    [sweep]            name, datasets, models, seeds, metrics ("accuracy" always; "ud" adds SAL to every
                       cell and a shared clean reference run per dataset, model, seed and defense), ud_defenses (the
                       defenses whose cells measure UD; default all), ud_reference ("same-defense": each defended cell
                       against the clean run trained with its defense, as the official UD code; "standard": against
                       the clean run of standard training), sal ("fast" or "exact"; default fast, or the protocol's),
                       sal_args (SAL knobs), poison_seed
    [train]            TrainConfig options for every cell (epochs, batch_size, lr, ..., protocol: a preset whose
                       values the other keys override)
    [attacks.NAME]     one attack of the grid; its keys are the attack's parameters. NAME is the attack
                       ('pst-fast attacks'), or an alias with attack = "em"; [attacks.clean] is the clean data
    [defenses.NAME]    one defense; its keys are the defense's parameters ('pst-fast defenses'), or an alias
                       with defense = "pst"
    [resources]        workers (local processes), threads (CPUs per cell), device, gpus_per_cell (Ray)
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PstFastError
from ..options import check, coerce

TOP = {"sweep", "train", "attacks", "defenses", "resources"}
SWEEP_KEYS = {"name": (str, {}), "datasets": (list, {}), "models": (list, {}), "seeds": (list, {}), "metrics": (list, {}),
              "poison_seed": (int, {"ge": 0}), "ud_defenses": (list, {}), "ud_reference": (str, {}), "sal": (str, {}),
              "sal_args": (str, {})}
UD_REFERENCES = ("same-defense", "standard")
RESOURCE_KEYS = {"workers": (int, {"ge": 1}), "threads": (int, {"ge": 1}), "device": (str, {}), "gpus_per_cell": (float, {"ge": 0})}
METRICS = ("accuracy", "ud")
CLEAN = "clean"


@dataclass
class Spec:
    """A checked sweep spec: attack and defense entries are (alias, name, resolved parameters)."""

    name: str
    datasets: list[str]
    models: list[str]
    seeds: list[int]
    metrics: list[str]
    poison_seed: int
    ud_defenses: list[str]
    sal_args: str
    train: dict
    attacks: list[tuple[str, str, dict]]
    defenses: list[tuple[str, str, dict]]
    resources: dict = field(default_factory=dict)
    path: str = ""
    ud_reference: str = "same-defense"
    sal: str = "fast"


class SpecError(PstFastError):
    pass


def _line(text: str, table: str, key: str | None = None) -> int:
    """1-based line of ``key`` inside ``[table]`` (or of the table header when key is None); 0 if not found."""
    current, header_line = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        s = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"\[\s*([^\]]+?)\s*\]", s)
        if m:
            current = re.sub(r"\s*\.\s*", ".", m.group(1)).replace('"', "")
            if current == table:
                header_line = n
            continue
        if key is not None and current == table and re.match(rf'"?{re.escape(key)}"?\s*=', s):
            return n
    return header_line


def _where(path: str, text: str, table: str, key: str | None) -> str:
    n = _line(text, table, key)
    return f"{path}:{n}" if n else path


def _fail(path: str, text: str, table: str, key: str | None, msg: str):
    raise SpecError(f"{_where(path, text, table, key)}: [{table}]{' ' + key if key else ''}: {msg}")


def _checked(path, text, table, key, fn, *args):
    """``fn(*args)`` (a check of :mod:`pst_fast.options`, whose message names ``key``) with its error placed in the spec."""
    try:
        return fn(*args)
    except PstFastError as e:
        raise SpecError(f"{_where(path, text, table, key)}: [{table}] {e}") from None


def _typed(path, text, table, key, value, want: tuple) -> None:
    typ, limits = want
    if typ is list:
        if not isinstance(value, list):
            _fail(path, text, table, key, f"expected a list, got {type(value).__name__} {value!r}")
        return
    _checked(path, text, table, key, lambda: check(value, key, typ, None, **limits))


def _coerce(path, text, table, cls, values: dict):
    """``cls`` from the ``[table]`` ``values`` by :func:`pst_fast.options.coerce`, an error placed at its key's line; a
    table of a defense without parameters (``cls`` None) must be empty."""
    if cls is None:
        if values:
            _fail(path, text, table, next(iter(values)), "takes no parameters")
        return None
    try:
        return coerce(cls, values, lambda key: f"{_where(path, text, table, key)}: [{table}]")
    except PstFastError as e:
        raise SpecError(str(e)) from None


def _given(obj, values: dict) -> dict:
    """The keys of ``values`` as the coerced ``obj`` holds them (what the table said, typed)."""
    return {k: getattr(obj, k) for k in values}


def _no_repeats(path, text, table, key, values: list) -> None:
    """Two equal entries of a grid axis would give cells of one id, trained twice at once into one directory."""
    seen = set()
    for v in values:
        if repr(v) in seen:
            _fail(path, text, table, key, f"{v!r} appears twice (its cells would be trained twice into one run directory)")
        seen.add(repr(v))


def _no_twins(path, text, kind: str, entries: list[tuple[str, str, dict]]) -> None:
    """Two aliases of one attack (or defense) with the same resolved parameters would name the same cells: refused."""
    first: dict[str, str] = {}
    for alias, _, resolved in entries:
        key = json.dumps(resolved, sort_keys=True, default=str)
        if key in first:
            line = _line(text, f"{kind}.{first[key]}")
            _fail(path, text, f"{kind}.{alias}", None, f"the same {kind[:-1]} with the same parameters as [{kind}.{first[key]}]"
                  f"{f' (line {line})' if line else ''}; the two would be one cell, trained twice")
        first[key] = alias


def load_spec(path: str | Path) -> Spec:
    """Read and check the spec at ``path`` (see the module docstring)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(f"{p}: cannot read the sweep spec ({e.strerror})") from None
    return parse_spec(text, str(p))


def parse_spec(text: str, path: str = "<spec>") -> Spec:
    from ..attacks import ATTACKS
    from ..defenses import DEFENSE_PARAMS, DEFENSES
    from ..models import list_models
    from ..training.config import TrainConfig

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e})") from None
    for k in doc:
        if k not in TOP:
            _fail(path, text, k, None, f"unknown section; expected one of {', '.join(sorted(TOP))}")
    sweep = doc.get("sweep", {})
    for k, v in sweep.items():
        if k not in SWEEP_KEYS:
            _fail(path, text, "sweep", k, f"unknown key; expected one of {', '.join(SWEEP_KEYS)}")
        _typed(path, text, "sweep", k, v, SWEEP_KEYS[k])
    datasets = sweep.get("datasets", ["cifar10-mini"])
    models, seeds = sweep.get("models", ["fastnet"]), sweep.get("seeds", [0])
    metrics = sweep.get("metrics", ["accuracy"])
    for key, values, ok, expected in (("models", models, lambda m: m in list_models(), "a registered model ('pst-fast models')"),
                                      ("seeds", seeds, lambda s: isinstance(s, int) and not isinstance(s, bool) and s >= 0, "integers >= 0"),
                                      ("metrics", metrics, lambda m: m in METRICS, f"one of {', '.join(METRICS)}"),
                                      ("datasets", datasets, lambda d: isinstance(d, str) and d, "dataset names or directories")):
        bad = [v for v in values if not ok(v)]
        if bad:
            _fail(path, text, "sweep", key, f"{bad[0]!r} is not {expected}")
    train = doc.get("train", {})
    for k in train:
        if k in ("data", "out", "defense", "defense_args", "seed", "model", "sal", "sal_args"):
            _fail(path, text, "train", k, "not a training option a sweep sets ('pst-fast train --help'; data, model, seed, "
                  "defense and SAL come from the grid)")
    train = _given(_coerce(path, text, "train", TrainConfig, train), train)
    from ..training.protocols import with_protocol

    try:
        preset = with_protocol(train)
        TrainConfig(**preset).validate()
    except PstFastError as e:
        _fail(path, text, "train", None, str(e))
    sal_mode = sweep.get("sal", preset.get("sal") or "fast")  # SAL comes from the grid, its mode from [sweep] or the protocol
    if "model" in preset and "models" not in sweep:  # the models too: the protocol's unless [sweep] models says
        models = [preset["model"]]
    train = {k: v for k, v in preset.items() if k not in ("sal", "sal_args", "model")}
    if sal_mode not in ("fast", "exact"):
        _fail(path, text, "sweep", "sal", f"expected fast or exact, got {sal_mode!r}")
    ud_reference = sweep.get("ud_reference", UD_REFERENCES[0])
    if ud_reference not in UD_REFERENCES:
        _fail(path, text, "sweep", "ud_reference", f"expected one of {', '.join(UD_REFERENCES)}, got {ud_reference!r}")

    from ..attacks.base import params_from
    from ..options import identity

    attacks, resolved = [], []
    for alias, values in doc.get("attacks", {}).items():
        table = f"attacks.{alias}"
        values = dict(values)
        name = values.pop("attack", alias)
        if name == CLEAN:
            if values:
                _fail(path, text, table, next(iter(values)), "the clean entry takes no parameters")
            attacks.append((alias, CLEAN, {}))
            resolved.append((alias, CLEAN, {"attack": CLEAN}))
            continue
        if name not in ATTACKS:
            _fail(path, text, table, "attack" if "attack" in doc["attacks"][alias] else None,
                  f"unknown attack {name!r}; expected one of {CLEAN}, {', '.join(ATTACKS)}")
        values = _given(_coerce(path, text, table, ATTACKS[name].params, values), values)
        attacks.append((alias, name, values))
        p = _checked(path, text, table, "eps", params_from, ATTACKS[name], values)
        resolved.append((alias, name, {"attack": name, **identity(p)}))
    _no_twins(path, text, "attacks", resolved)
    defenses, resolved = [], []
    for alias, values in doc.get("defenses", {}).items():
        table = f"defenses.{alias}"
        values = dict(values)
        name = values.pop("defense", alias)
        if name not in DEFENSES:
            _fail(path, text, table, "defense" if "defense" in doc["defenses"][alias] else None,
                  f"unknown defense {name!r}; expected one of {', '.join(sorted(DEFENSES))}")
        p = _coerce(path, text, table, DEFENSE_PARAMS.get(name), values)
        defenses.append((alias, name, _given(p, values) if p else {}))
        resolved.append((alias, name, {"defense": name, **(dataclasses.asdict(p) if p else {})}))
    _no_twins(path, text, "defenses", resolved)
    resources = doc.get("resources", {})
    for k, v in resources.items():
        if k not in RESOURCE_KEYS:
            _fail(path, text, "resources", k, f"unknown key; expected one of {', '.join(RESOURCE_KEYS)}")
        _typed(path, text, "resources", k, v, RESOURCE_KEYS[k])
    for key, values in (("datasets", datasets), ("models", models), ("seeds", seeds)):
        if not values:
            _fail(path, text, "sweep", key, "is empty: the grid has no cells")
        _no_repeats(path, text, "sweep", key, values)
    _no_repeats(path, text, "sweep", "datasets", [os.path.realpath(d) if os.path.isdir(d) else d for d in datasets])
    for table, entries in (("attacks", attacks), ("defenses", defenses)):
        if not entries:
            raise SpecError(f"{path}: no [{table}.NAME] section: the grid has no cells")
    ud_defenses = sweep.get("ud_defenses", [a for a, _, _ in defenses])
    unknown = [d for d in ud_defenses if d not in [a for a, _, _ in defenses]]
    if unknown:
        _fail(path, text, "sweep", "ud_defenses", f"{unknown[0]!r} is not a [defenses.NAME] of this spec")
    sal_args = sweep.get("sal_args", "")
    if sal_args:
        from ..metrics.sal import parse_sal_config

        try:
            parse_sal_config(sal_mode, sal_args)
        except PstFastError as e:
            _fail(path, text, "sweep", "sal_args", str(e))
    return Spec(sweep.get("name", Path(path).stem), datasets, models, seeds, metrics, sweep.get("poison_seed", 0), ud_defenses,
                sal_args, train, attacks, defenses, resources, path, ud_reference, sal_mode)


def with_amp(spec, amp: str):
    """``spec`` with bf16 autocast ``amp`` (on/off) for its training and its surrogate-based attacks; auto leaves it as it is."""
    from ..attacks import ATTACKS

    if amp == "auto":
        return spec
    takes_amp = {name for name, attack in ATTACKS.items() if hasattr(attack.params, "amp")}
    attacks = [(alias, name, ov | {"amp": amp} if name in takes_amp else ov) for alias, name, ov in spec.attacks]
    return dataclasses.replace(spec, train=spec.train | {"amp": amp}, attacks=attacks)
