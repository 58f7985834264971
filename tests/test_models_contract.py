"""Every registered model keeps the one model contract (:class:`minwa.models.base.ModelBase`) and is
pinned to what it was before the one-base refactor: state-dict names and shapes, parameter counts,
initial weights, outputs, constructor options, so existing checkpoints and configs keep loading and runs
keep their numbers. A newly registered model is picked up by every test here.

The pins were measured on the code before the refactor. Regenerate them (``python
tests/test_models_contract.py`` prints the table) only for a change that means to alter a model.
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
import torch
from torch import nn

from minwa.evaluate.dense import DenseModel, DenseProbs
from minwa.models import create_model, list_models
from minwa.models.base import ModelBase
from minwa.models.layers import FCHead
from minwa.models.registry import _constructor
from model_fixtures import small_in_chans, small_model


def _sha(chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c if isinstance(c, bytes) else str(c).encode())
    return h.hexdigest()[:16]


def _options(name: str) -> str:
    """The constructor's options and defaults, sorted: what ``create_model`` and config checks accept."""
    params = inspect.signature(_constructor(name)).parameters
    return " ".join(f"{k}={params[k].default!r}" for k in sorted(params))


def measure(name: str) -> dict:
    """(a) full-size state-dict names and shapes, (b) parameter counts, (c) seeded weights and outputs."""
    full = create_model(name, 1000, 3, device="meta")
    torch.manual_seed(0)
    small = small_model(name)
    weights = _sha(k.encode() + v.numpy().tobytes() for k, v in small.state_dict().items())
    model = small.double().eval()
    s = model.default_scale
    x = torch.randn(2, small_in_chans(name), s, s, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    ramp = torch.arange(y.numel(), dtype=torch.float64).view_as(y)
    return {
        "state": _sha(f"{k}:{tuple(v.shape)};" for k, v in full.state_dict().items()),
        "params": sum(p.numel() for p in full.parameters()),
        "small_params": sum(p.numel() for p in small.parameters()),
        "weights": weights,
        "out": (float(y.sum()), float(y.square().sum()), float((y * ramp).sum())),
        "linear": tuple(n for n, m in full.named_modules() if isinstance(m, nn.Linear)),
        "options": _sha([_options(name)]),
    }


# measured on the code before the refactor (main at d97bfda)
PINNED = {
    'alexnet': dict(state='ff79b96331b79cb1', params=60965224, small_params=2338583,
                    weights='a9d3498796fdbc9d', options='4ca7c61fc943d67a',
                    linear=('head.fc1', 'head.fc2', 'head.fc3'),
                    out=(1.2197416437897816e-05, 1.858132057112755e-11, 9.476484278350812e-05)),
    # added with issue #17 (torchvision's AlexNet, for its ImageNet weights); 61,100,840 = torchvision's count
    'alexnet-torchvision': dict(state='a4205649d6f6ab0b', params=61100840, small_params=2474199,
                                weights='e966f629a8c6eb58', options='1e02c5251b044d18',
                                linear=('head.fc1', 'head.fc2', 'head.fc3'),
                                out=(5.841949964036326e-06, 3.9193899091845983e-10, -1.6858029389801892e-05)),
    'alexnet-tiny': dict(state='b96c087b9f146072', params=541352, small_params=284551,
                         weights='cc9828b759c9788a', options='f65e234427ff49f8',
                         linear=('head.fc1', 'head.fc2', 'head.fc3'),
                         out=(-0.00014067802218262855, 2.0158464196890727e-09, -0.0008738786791756734)),
    'deepimage-scaling': dict(state='193b904f5543c36b', params=132863336, small_params=4011,
                              weights='e55fdd24e5816175', options='3dd415e174051671',
                              linear=('head.fc1', 'head.fc2', 'head.fc3'),
                              out=(3.0204371863460263e-05, 6.102468686488827e-10, 0.00019581252793158505)),
    'deepimage-tiny': dict(state='06daf875001d4474', params=242952, small_params=114567,
                           weights='4a54694ca64a7ac1', options='d441c94adebe2d0c',
                           linear=('head.fc1', 'head.fc2', 'head.fc3'),
                           out=(-0.004430486875308566, 4.09568139512093e-06, -0.027343142771854817)),
    'deepimage16': dict(state='558ab7aa9a36abd3', params=212761384, small_params=6059,
                        weights='c979e988f5c13698', options='a0b5b9e3ddc06fa5',
                        linear=('head.fc1', 'head.fc2', 'head.fc3'),
                        out=(4.2605152882433116e-07, 2.6804917194709798e-11, -5.478024335120986e-06)),
    'deepimage19': dict(state='d20c070b4e9ee60b', params=218071080, small_params=7811,
                        weights='37081a3dd40091a3', options='a0b5b9e3ddc06fa5',
                        linear=('head.fc1', 'head.fc2', 'head.fc3'),
                        out=(7.361242654293921e-07, 3.7794560886376556e-12, 7.041763524976314e-06)),
    'fashion-net': dict(state='35ffcc3f08fc1a91', params=420664, small_params=292279,
                        weights='ecf2c122a411fbb3', options='fc56e861d1e538cd',
                        linear=('head',),
                        out=(-0.1528341507035642, 0.038913792354706475, -0.09481273742564778)),
    'fashion-net-wide': dict(state='3c1769220606bef6', params=848224, small_params=656143,
                             weights='f5590dfaa24d777a', options='3b17709bddb5aca0',
                             linear=('head',),
                             out=(0.1716445949682227, 0.02491556716079786, 1.0250046584283279)),
    'inception-bn': dict(state='e572664ee99e6e09', params=11285224, small_params=164439,
                         weights='4e8de6c8b258b325', options='9654f3843b3afcc6',
                         linear=('fc',),
                         out=(5.385991579308224, 2.7897289652080355, 31.19027402064413)),
    'inception-bn-tiny': dict(state='bb688e9b1509a7bb', params=669896, small_params=366455,
                              weights='bad94074f8c96d9c', options='5f8edd7719732d61',
                              linear=('fc',),
                              out=(-1.4663361562172623, 1.3851379908556432, -12.348956678220617)),
    'photo-net': dict(state='01b00a679d4d4ae7', params=848728, small_params=656311,
                      weights='f705cf58177a3668', options='aac9957232f7ef0d',
                      linear=('head',),
                      out=(0.17309637845419773, 0.025407913624699168, 1.01456279582446)),
    'resnet-tiny': dict(state='4dc9131e6db492f8', params=142392, small_params=77559,
                        weights='0eeb2bd7ebf0e4ee', options='ee26ce4542f65c17',
                        linear=('fc',),
                        out=(-0.07256390822935202, 0.0037606766891100257, -0.5799225464150063)),
    'resnet18': dict(state='6d6fb1bacb25b596', params=11689512, small_params=11180103,
                     weights='7db39f38286abf62', options='e82697a0b4a4180a',
                     linear=('fc',),
                     out=(0.46265206107868057, 0.23362167006861434, 3.5965860101585907)),
    'resnet50': dict(state='d61f34fc6d0b6d85', params=25557032, small_params=23522375,
                     weights='314d5338218fb7c5', options='e82697a0b4a4180a',
                     linear=('fc',),
                     out=(1.0347390436115689, 55.9683339090651, 14.119022228289781)),
}


def test_every_registered_model_is_pinned():
    assert sorted(PINNED) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_model_unchanged(name):
    got, want = measure(name), PINNED[name]
    assert got["options"] == want["options"], f"{name}'s options changed: {_options(name)}"
    assert got["state"] == want["state"], f"{name}'s state-dict names or shapes changed: old checkpoints break"
    assert (got["params"], got["small_params"]) == (want["params"], want["small_params"])
    assert got["linear"] == want["linear"]
    assert got["weights"] == want["weights"], f"{name}'s initial weights changed (construction or init order)"
    assert got["out"] == pytest.approx(want["out"], rel=1e-6, abs=1e-15)


# ---------------------------------------------------------------- the contract, for every model

def _small64(name: str, num_classes: int = 7) -> ModelBase:
    torch.manual_seed(0)
    return small_model(name, num_classes, dtype=torch.float64).eval()


def _images(model: ModelBase, n: int = 2, scale: int = 0) -> torch.Tensor:
    s = scale or model.default_scale
    return torch.randn(n, model.in_chans, s, s, dtype=torch.float64, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", list_models())
def test_model_owns_its_sizes_and_forward(name):
    m = _small64(name)
    assert isinstance(m, ModelBase)
    assert (m.num_classes, m.in_chans) == (7, small_in_chans(name)) and m.default_scale >= 1
    x = _images(m)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.forward_head(m.forward_features(x)), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_models())
def test_fc_layers_are_every_linear_layer_in_order(name):
    """fine-tuning, the hybrid split and dense testing read these: every Linear layer, forward order."""
    m = create_model(name, 1000, 3, device="meta")
    named = m.named_fc_layers()
    assert tuple(n for n, _ in named) == PINNED[name]["linear"]
    assert [layer for _, layer in named] == m.fc_layers()
    assert all(isinstance(layer, nn.Linear) for layer in m.fc_layers())
    for a, b in zip(m.fc_layers(), m.fc_layers()[1:]):
        assert a.out_features == b.in_features
    assert m.classifier() is m.fc_layers()[-1] and m.classifier().out_features == 1000


@pytest.mark.parametrize("name", list_models())
def test_reset_head_gives_a_new_classifier_and_keeps_the_rest(name):
    m = _small64(name)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    old = m.classifier()
    assert m.reset_head(3) is m
    new = m.classifier()
    assert new is not old and (new.in_features, new.out_features) == (old.in_features, 3) and m.num_classes == 3
    assert new.weight.dtype == torch.float64
    with torch.no_grad():
        assert m(_images(m)).shape == (2, 3)
    classifier = m.fc_names[-1]
    after = m.state_dict()
    assert list(after) == list(before)  # the same checkpoint keys
    for k, v in before.items():
        if not k.startswith(classifier + "."):
            assert torch.equal(v, after[k]), k


@pytest.mark.parametrize("name", list_models())
def test_dense_evaluation_path(name):
    """FC heads: converted, equal to the model on its crop, a score map on a larger image. Pooled heads:
    the model itself on any size."""
    m = _small64(name)
    x, big = _images(m), _images(m, scale=2 * m.default_scale)
    with torch.no_grad():
        if m.fc_head() is None:
            torch.testing.assert_close(DenseProbs(m)(big), torch.softmax(m(big), 1).float())
            return
        assert isinstance(m.fc_head(), FCHead)
        torch.testing.assert_close(DenseModel(m)(x)[:, :, 0, 0], m(x), rtol=0, atol=1e-10)
        smap = DenseModel(m)(big)
        probs = DenseProbs(m)(big)
    assert smap.shape[:2] == (2, 7) and smap.shape[-1] > 1
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


@pytest.mark.parametrize("name", list_models())
def test_grad_checkpointing_leaves_outputs_alone(name):
    m = _small64(name)
    x = _images(m)
    with torch.no_grad():
        ref = m(x)
    m.set_grad_checkpointing(True)
    out = m(x)
    out.sum().backward()
    torch.testing.assert_close(out.detach(), ref, rtol=0, atol=0)


if __name__ == "__main__":  # print the table to paste into PINNED
    for n in list_models():
        m = measure(n)
        pad = " " * (len(repr(n)) + 11)
        print(f"    {n!r}: dict(state={m['state']!r}, params={m['params']}, small_params={m['small_params']},\n"
              f"{pad}weights={m['weights']!r}, options={m['options']!r},\n{pad}linear={m['linear']!r},\n"
              f"{pad}out={m['out']!r}),")
