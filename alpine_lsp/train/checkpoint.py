"""Training checkpoints without pickle: tensors go to safetensors, everything else to JSON.

torch.save/torch.load would be shorter, but a checkpoint directory is a file a user may be handed,
and the project loads nothing through the unpickler, not even its own optimizer state.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _split(obj, prefix: str, tensors: dict[str, torch.Tensor]):
    """Replace every tensor in a nested dict/list by a {"__tensor__": key} marker."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        # JSON keys are strings; remember which were ints (optimizer state is keyed by int).
        return {
            "__dict__": [
                [k, isinstance(k, int), _split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()
            ]
        }
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {(int(k) if was_int else k): _join(v, tensors) for k, was_int, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save_state(states: dict, directory: Path, stem: str) -> None:
    """Write nested state dicts as STEM.safetensors + STEM.json, each replaced atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _split(states, "s", tensors)
    tmp_t = directory / f"{stem}.safetensors.tmp"
    tmp_j = directory / f"{stem}.json.tmp"
    save_file(tensors, str(tmp_t))
    tmp_j.write_text(json.dumps(tree))
    tmp_t.replace(directory / f"{stem}.safetensors")
    tmp_j.replace(directory / f"{stem}.json")


def load_state(directory: Path, stem: str) -> dict:
    tensors = load_file(str(directory / f"{stem}.safetensors"))
    return _join(json.loads((directory / f"{stem}.json").read_text()), tensors)
