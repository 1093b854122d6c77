"""Global-batch BatchNorm over 2 gloo ranks equals BatchNorm on the whole batch."""

import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from dist_bn_worker import batch, model  # noqa: E402


def test_global_batchnorm_matches_whole_batch(tmp_path, run_distributed) -> None:
    run_distributed(HERE / "dist_bn_worker.py", 2, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    net = model()
    out = net(batch())
    (out.square().mean()).backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out, rtol=1e-4, atol=1e-5)
    for name, p in net.named_parameters():
        # Each rank's gradient is 2x its share; DDP's averaging makes the sum/2 the whole grad.
        summed = (ranks[0]["grads"][name] + ranks[1]["grads"][name]) / 2
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(summed, p.grad, rtol=1e-3, atol=1e-4 * scale, msg=name)
    for key, value in net.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-6)
