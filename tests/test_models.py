"""Model zoo: every registered model is the composition of its blocks, with one consistent interface."""
import pytest
import torch
from torch import nn

from pst_fast.errors import PstFastError
from pst_fast.models import BlockModel, create_model, list_models, model_info
from pst_fast.models.flops import count_flops

HEAVY = {"wrn34-10", "densenet121", "resnet50", "resnet50-imagenet", "resnet18-imagenet"}
NUM_CLASSES = {"resnet18": 100, "vit-tiny": 100, "mobilenetv2": 100}


def test_registry_lists_the_zoo():
    assert set(list_models()) >= {
        "fastnet", "resnet18", "resnet50", "vgg16", "densenet121", "mobilenetv2", "wrn34-10",
        "vit-small", "vit-tiny", "resnet18-imagenet", "resnet50-imagenet",
    }


@pytest.mark.parametrize("name", list_models())
def test_blocks_compose_to_forward(name):
    torch.manual_seed(0)
    num_classes = NUM_CLASSES.get(name, 10)
    model = create_model(name, num_classes=num_classes).eval()
    assert isinstance(model, BlockModel) and type(model).forward is BlockModel.forward
    size = model.default_image_size
    assert size == (224 if name.endswith("-imagenet") else 32)
    x = torch.randn(1 if name in HEAVY else 2, 3, size, size)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
    assert out.shape == (x.shape[0], num_classes)
    assert len(feats) == len(model.blocks) and torch.equal(feats[-1], out)
    names = model.block_names
    assert names == list(model.blocks) and len(set(names)) == len(names) >= 3
    assert names[-1] == "head" and names[0] in ("stem", "embed", "stage1")
    owners = {}
    for bname, block in model.blocks.items():
        for p in block.parameters():
            assert id(p) not in owners, f"parameter shared by {owners[id(p)]} and {bname}"
            owners[id(p)] = bname
    assert len(owners) == len(list(model.parameters()))
    # the trainer finds the classifier as the last weight of the state dict
    assert [v for k, v in model.state_dict().items() if k.endswith(".weight")][-1].shape[0] == num_classes


@pytest.mark.parametrize("name", ["fastnet", "vit-tiny"])
def test_forward_from_every_block(name):
    model = create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        for start in range(1, len(feats)):
            assert torch.equal(model.forward_from(feats[start - 1], start), feats[-1])
        assert torch.equal(model.forward_from(x, 0), model(x))


def test_model_info():
    info = {name: model_info(name) for name in ("fastnet", "resnet18", "vit-small")}
    for name, i in info.items():
        model = create_model(name)
        assert i["params"] == sum(p.numel() for p in model.parameters())
        assert i["blocks"] == model.block_names and i["image_size"] == 32 and i["name"] == name
    assert 1.10e9 < info["resnet18"]["flops_per_image"] < 1.12e9  # 0.556 GMACs on 32x32
    assert 5.0e7 < info["fastnet"]["flops_per_image"] < 2.0e8
    assert model_info("fastnet", num_classes=100)["params"] == info["fastnet"]["params"] + 90 * 129
    assert model_info("fastnet", widths=(8, 16, 32, 64))["flops_per_image"] < info["fastnet"]["flops_per_image"] / 3
    assert model_info("resnet18-imagenet")["image_size"] == 224
    # vit-small: 6 blocks of qkv + proj + MLP 512 on 65 tokens + the two attention matmuls, patchify conv, head
    blk = 65 * 512 * (3 * 512 + 512 + 2 * 512) + 2 * 65 * 65 * 512
    assert info["vit-small"]["flops_per_image"] == 2 * (6 * blk + 64 * 512 * 48 + 512 * 10)


def test_flops_count_conv_and_linear():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.Flatten(), nn.Linear(8 * 5 * 5, 7))
    assert count_flops(net, 5) == 2 * (25 * 8 * 27 + 25 * 8 * 2 * 9 + 7 * 200)
    assert net.training  # mode restored


def test_bad_names_and_options_are_one_line():
    with pytest.raises(PstFastError, match="unknown model 'nonet': expected one of .*fastnet") as e:
        create_model("nonet")
    assert "\n" not in str(e.value)
    with pytest.raises(PstFastError, match="model 'resnet18'"):
        create_model("resnet18", widths=(8, 16, 32, 64))
    with pytest.raises(PstFastError, match="widths"):
        create_model("fastnet", widths=(8, 16))
    with pytest.raises(PstFastError, match="num_classes"):
        create_model("fastnet", num_classes=1)


def test_fastnet_channels_last_forward_backward():
    torch.manual_seed(0)
    model = create_model("fastnet")
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["fastnet", "vit-tiny"])
def test_compiles_without_graph_breaks(name):
    model = create_model(name).eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("name", ["fastnet", "fastnet-small", "resnet18", "mobilenetv2", "vgg16"])
def test_fold_batchnorm_matches_eval(name):
    from pst_fast.models import fold_batchnorm

    torch.manual_seed(0)
    model = create_model(name)
    for m in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(4, 3, 32, 32)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(not p.requires_grad for p in folded.parameters()) and all(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
