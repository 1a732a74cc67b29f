"""What every latent codec shares: the coded-latent interface, and the checkpoint layout that keeps
the published (flat) state_dict keys while latent codecs are modules of their own.

The published checkpoints have no level for latent codecs: the I-frame codec's hyperprior encoder
is `hyper_enc`, not `hyperprior.encoder`. A latent codec names its submodules for what they are
and says which checkpoint name each one has (`checkpoint_names`); its owner (`checkpoint_layout`)
saves and loads them under those names, in the published checkpoint's order.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Protocol, Sequence

import torch
from torch import nn

from ..entropy.coder import EntropyCoder


class CodedLatent(Protocol):
    """A latent of one batch, quantized by a latent codec: `y_hat` (what the decoder gets, in the
    latent's units), its estimated bits and the symbols it puts in a payload."""

    y_hat: torch.Tensor

    def bits(self) -> torch.Tensor:
        """Estimated bits of the batch (a 0-d tensor)."""

    def write(self, coder: EntropyCoder) -> None:
        """Queue the latent's symbols in `coder`."""


class LatentCodec(nn.Module):
    """Base of latent codecs. `checkpoint_names`: {submodule name: its name in the owner's
    checkpoint}; submodules not listed keep their own name. `noisy_rate` (False unless set): in
    train mode, estimate the rate on the latent plus uniform noise instead of the straight-through
    rounded latent (see `sevc.entropy.quantization`)."""

    def __init__(self, checkpoint_names: Dict[str, str]):
        super().__init__()
        self.checkpoint_names = dict(checkpoint_names)
        self.noisy_rate = False

    @property
    def noisy(self) -> bool:
        """Whether the rate is estimated on noisy latents now (train mode and noisy_rate)."""
        return self.training and self.noisy_rate

    def update(self, force: bool = False) -> None:
        """Build the entropy model's rANS tables (needed before coding a payload)."""
        raise NotImplementedError


def use_noisy_rate(model: nn.Module, noisy: bool) -> None:
    """Set `noisy_rate` of every latent codec in `model`."""
    for codec in latent_codecs(model):
        codec.noisy_rate = noisy


def checkpoint_layout(owner: nn.Module, order: Sequence[str]) -> None:
    """Save and load `owner`'s latent codecs under their checkpoint names, and list its state_dict
    entries in the published order: `order` names the owner's top-level checkpoint entries (its
    own parameters come first, names not in `order` last, each group as registered). The hooks
    are module-level functions, so the model still pickles whole."""
    owner.register_state_dict_post_hook(functools.partial(_save_flat, {name: k for k, name in enumerate(order)}))
    owner.register_load_state_dict_pre_hook(_load_nested)


def _checkpoint_names(owner: nn.Module) -> Dict[str, str]:
    """{submodule path: checkpoint name} of the submodules of `owner`'s latent codecs."""
    return {f"{name}.{inner}": codec.checkpoint_names.get(inner, inner)
            for name, codec in owner.named_children() if isinstance(codec, LatentCodec)
            for inner, _ in codec.named_children()}


def _save_flat(rank: Dict[str, int], module: nn.Module, state_dict: Dict, prefix: str, local_metadata: Dict) -> None:
    """state_dict post-hook: the module's entries (the last ones) renamed (`codec.inner.leaf` to
    `<inner's checkpoint name>.leaf`) and reordered."""
    names = _checkpoint_names(module)

    def renamed(key: str) -> str:
        codec, _, rest = key[len(prefix):].partition(".")
        inner, _, leaf = rest.partition(".")
        path = f"{codec}.{inner}"
        return f"{prefix}{names[path]}.{leaf}" if path in names and leaf else key

    entries = [(renamed(key), state_dict.pop(key)) for key in [key for key in state_dict if key.startswith(prefix)]]

    def position(entry) -> tuple:
        relative = entry[0][len(prefix):]
        return ("." in relative, rank.get(relative.partition(".")[0], len(rank)))

    for key, value in sorted(entries, key=position):
        state_dict[key] = value


def _load_nested(module: nn.Module, state_dict: Dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: entries under a checkpoint name moved to their submodule path."""
    paths = {name: path for path, name in _checkpoint_names(module).items()}
    for key in [key for key in state_dict if key.startswith(prefix)]:
        head, _, leaf = key[len(prefix):].partition(".")
        if head in paths and leaf:
            state_dict[f"{prefix}{paths[head]}.{leaf}"] = state_dict.pop(key)


def latent_codecs(owner: nn.Module) -> List[LatentCodec]:
    """The latent codecs among `owner`'s submodules."""
    return [module for module in owner.modules() if isinstance(module, LatentCodec)]
