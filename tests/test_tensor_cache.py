"""Values derived from tensors (sevc.numerics.cache): computed once per tensor, again after an
in-place change, freed with the tensor's model."""
import gc
import weakref

import torch

from sevc.models.rate import fine_levels
from sevc.numerics.cache import TensorCache
from sevc.numerics.exact import cached_weight_grid
from sevc.numerics.integer import cached_integer_weight


def test_an_entry_is_computed_once_per_tensor_and_variant():
    calls = []
    cache = TensorCache(lambda tensor, scale: calls.append(scale) or tensor * scale)
    x = torch.ones(3)
    assert cache(x, 2) is cache(x, 2)
    cache(x, 3)
    assert calls == [2, 3] and len(cache) == 2


def test_an_in_place_change_recomputes_the_entry():
    cache = TensorCache(lambda tensor: tensor.sum())
    x = torch.ones(3)
    assert cache(x) == 3
    x.mul_(2)
    assert cache(x) == 6 and len(cache) == 1


def test_entries_are_dropped_with_their_tensor():
    cache = TensorCache(lambda tensor, variant: tensor.detach() + variant)
    model = torch.nn.Linear(4, 4)
    cache(model.weight, 0)
    cache(model.weight, 1)
    cache(model.bias, 0)
    assert len(cache) == 3
    del model
    gc.collect()
    assert len(cache) == 0


def test_derived_weights_are_freed_with_their_model():
    model = torch.nn.Conv2d(4, 8, 3)
    derived = [weakref.ref(cached_weight_grid(model.weight)), weakref.ref(cached_integer_weight(model.weight).q)]
    anchors = torch.nn.Parameter(torch.tensor([0.6, 0.9, 1.3, 1.9]).view(4, 1, 1, 1))
    derived.append(weakref.ref(fine_levels(anchors)))
    assert all(ref() is not None for ref in derived)
    del model, anchors
    gc.collect()
    assert all(ref() is None for ref in derived)


def test_a_changed_weight_gets_a_new_grid():
    model = torch.nn.Conv2d(4, 8, 3)
    grid = cached_weight_grid(model.weight)
    assert cached_weight_grid(model.weight) is grid
    with torch.no_grad():
        model.weight.mul_(2)  # a power of two: the grids scale exactly
    assert torch.equal(cached_weight_grid(model.weight), 2 * grid)
    assert torch.equal(cached_integer_weight(model.weight).q, cached_integer_weight(model.weight.detach().clone()).q)
