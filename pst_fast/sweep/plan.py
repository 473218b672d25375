"""Expanding a checked spec into cells and the artifacts they share, each named by a content hash of its
fully resolved configuration (so a rerun, or another spec asking for the same thing, finds it again).

A poison artifact is (dataset, attack, all its parameters, poison seed): generated once, reused by every cell
on it. A cell is one training run: (data, model, seed, defense with its parameters, training options, SAL).
With metric "ud", the cells of the ``ud_defenses`` measure SAL (the spec's ``sal`` mode) and UD compares each with
the clean cell of its dataset, model and seed trained with its own defense (``ud_reference = "same-defense"``, as
the official UD code) or with standard training (``"standard"``) — added as a reference when the grid lacks it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..errors import PstFastError
from ..text import printable
from .spec import CLEAN, Spec


def content_id(obj) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Poison:
    dataset: str
    attack: str
    params: tuple  # sorted (name, value) pairs of every parameter, defaults included
    seed: int

    @property
    def id(self) -> str:
        return content_id({"kind": "poison", "dataset": self.dataset, "attack": self.attack, "params": dict(self.params), "seed": self.seed})


@dataclass(frozen=True)
class Cell:
    dataset: str
    attack: str           # the spec's alias ("clean" for clean data)
    defense: str          # the spec's alias
    model: str
    seed: int
    poison: Poison | None
    train: tuple          # sorted (option, value) pairs of the resolved TrainConfig, data and out excluded
    reference: bool = False  # only there as the clean reference of UD

    @property
    def id(self) -> str:
        return content_id({"kind": "cell", "data": self.poison.id if self.poison else self.dataset, "train": dict(self.train)})

    def config(self) -> dict:
        """The cell's TrainConfig options (``train`` less what its identity derives from them, e.g. ``defense_params``)."""
        from ..training.config import TrainConfig

        names = {f.name for f in dataclasses.fields(TrainConfig)}
        return {k: v for k, v in self.train if k in names}


def _train_options(spec: Spec, model: str, seed: int, defense: str, params: dict, sal: bool) -> tuple:
    from ..run import identity
    from ..training.config import TrainConfig

    cfg = TrainConfig(**spec.train, model=model, seed=seed, defense=defense, quiet=True,
                      defense_args=",".join(f"{k}={v}" for k, v in sorted(params.items())),
                      sal=spec.sal if sal else "", sal_args=spec.sal_args if sal else "")
    return tuple(sorted(identity(cfg).items()))


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the grid (datasets × attacks × defenses × models × seeds), then the UD references it lacks."""
    from ..attacks import ATTACKS
    from ..attacks.base import params_from
    from ..options import identity

    cells = []
    for dataset in spec.datasets:
        for alias, name, overrides in spec.attacks:
            poison = None
            if name != CLEAN:
                p = identity(params_from(ATTACKS[name], overrides))
                poison = Poison(dataset, name, tuple(sorted(p.items())), spec.poison_seed)
            for d_alias, d_name, d_params in spec.defenses:
                for model in spec.models:
                    for seed in spec.seeds:
                        sal = "ud" in spec.metrics and d_alias in spec.ud_defenses
                        cells.append(Cell(dataset, alias, d_alias, model, seed, poison, _train_options(spec, model, seed, d_name, d_params, sal)))
    seen: dict[str, Cell] = {}
    for c in cells:  # parse_spec refuses repeated axis values and twin aliases; this is the net under it
        if c.id in seen:
            a = seen[c.id]
            raise PstFastError(f"{spec.path}: cells {a.attack} × {a.defense} ({a.model}, seed {a.seed}) and {c.attack} × {c.defense} "
                               f"({c.model}, seed {c.seed}) of {c.dataset} are the same cell {c.id}; remove one of the two entries")
        seen[c.id] = c
    if "ud" in spec.metrics:
        have = {c.id for c in cells}
        references = [("standard", "standard", {})] if spec.ud_reference == "standard" else \
            [d for d in spec.defenses if d[0] in spec.ud_defenses]
        for dataset in spec.datasets:
            for d_alias, d_name, d_params in references:
                for model in spec.models:
                    for seed in spec.seeds:
                        ref = Cell(dataset, CLEAN, d_alias, model, seed, None, _train_options(spec, model, seed, d_name, d_params, True),
                                   reference=True)
                        if ref.id not in have:
                            have.add(ref.id)
                            cells.append(ref)
    return cells


def reference_of(cell: Cell, cells: list[Cell], ud_reference: str = "same-defense") -> Cell | None:
    """The clean cell with SAL that UD compares ``cell`` with: same dataset, model and seed, trained with ``cell``'s defense
    (``ud_reference`` 'same-defense') or with standard training ('standard')."""
    mine = dict(cell.train)
    want = (mine["defense"], mine["defense_args"]) if ud_reference == "same-defense" else ("standard", "")
    for c in cells:
        theirs = dict(c.train)
        if c.poison is None and (theirs["defense"], theirs["defense_args"]) == want and theirs["sal"] \
                and (c.dataset, c.model, c.seed) == (cell.dataset, cell.model, cell.seed):
            return c
    return None


def plan_text(spec: Spec, cells: list[Cell]) -> str:
    """What ``pst-fast sweep plan`` prints: one line per cell with what it reuses, then the totals."""
    poisons = {}
    for c in cells:
        if c.poison:
            poisons.setdefault(c.poison.id, []).append(c)
    lines = [f"sweep {spec.name!r}: {len(cells)} cells ({sum(c.reference for c in cells)} UD references), "
             f"{len(poisons)} poisons to generate, metrics {', '.join(spec.metrics)}",
             f"{'cell':<17} {'dataset':<14} {'attack':<10} {'defense':<12} {'model':<10} {'seed':>4}  reuses"]
    for c in cells:
        reuse = []
        if c.poison:
            reuse.append(f"poison {c.poison.id} (shared by {len(poisons[c.poison.id])} cells)")
        if dict(c.train)["sal"] and not (c.poison is None and (spec.ud_reference == "same-defense" or c.defense == "standard")):
            ref = reference_of(c, cells, spec.ud_reference)
            reuse.append(f"clean reference {ref.id}" if ref else "no clean reference")
        tag = " [UD reference]" if c.reference else ""
        lines.append(printable(f"{c.id:<17} {c.dataset[-14:]:<14} {c.attack:<10} {c.defense:<12} {c.model:<10} {c.seed:>4}  "
                               f"{'; '.join(reuse)}{tag}"))
    return "\n".join(lines)


def intro_text(spec: Spec, cells: list[Cell]) -> str:
    """What a sweep is about to do, in words (printed before it runs)."""
    from ..attacks import get_attack
    from ..defenses import DEFENSES

    epochs = dict(cells[0].train)["epochs"] if cells else 0
    args = lambda params: f" [{', '.join(f'{k}={v}' for k, v in params.items())}]" if params else ""  # noqa: E731
    listed = lambda what, items: f"{what}{'s' if len(items) > 1 else ''} {', '.join(map(str, items))}"  # noqa: E731
    lines = [f"sweep {spec.name!r}: {len(cells)} training runs of {epochs} epochs on {', '.join(spec.datasets)} "
             f"({listed('model', spec.models)}; {listed('seed', spec.seeds)})"]
    for title, entries, describe in (
            ("data", spec.attacks, lambda name: "clean data" if name == CLEAN else get_attack(name).summary),
            ("training", spec.defenses, lambda name: (DEFENSES[name].__doc__ or "").strip().splitlines()[0].rstrip("."))):
        for i, (alias, name, params) in enumerate(entries):
            lines.append(printable(f"  {title if i == 0 else '':<9} {alias}: {describe(name)}{args(params)}"))
    if "ud" in spec.metrics:
        refs = sum(c.reference for c in cells)
        against = "clean data with the same training" if spec.ud_reference == "same-defense" else "clean standard training"
        lines.append(f"  {'metrics':<9} clean test accuracy; UD of {', '.join(spec.ud_defenses)} training on each poison against "
                     f"{against} ({spec.sal} SAL{f'; {refs} clean reference run' + ('s' if refs > 1 else '') + ' added' if refs else ''})")
    return "\n".join(lines)
