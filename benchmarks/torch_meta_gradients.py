"""PyTorch side of benchmarks/float32_accuracy.py: per-task MAML / FOMAML meta-gradients of a Conv4 (runs under torch).

    python benchmarks/torch_meta_gradients.py IN.npz OUT.npz --k 1 --algorithm maml --dtype float32

IN.npz holds the weights (``p:Conv_0/kernel`` ... in metajax's layout: HWIO kernels, (in, out) head) and the
tasks (``xs, ys, xq, yq`` with a leading task axis, NHWC images). The network is the Conv4 of metajax and of
learn2learn's ``OmniglotCNN``: four blocks of 3x3 convolution (padding 1), batch norm with the batch's statistics
(no running averages), 2x2 max-pool and ReLU, then a linear head. The inner loop is learn2learn's MAML update
written out: ``p' = p - lr * grad``, the gradient taken with ``create_graph=True`` for MAML and detached for
FOMAML, the query cross-entropy differentiated with respect to the initial weights (MAML) or the adapted ones
(FOMAML). OUT.npz holds one meta-gradient per task (leading task axis), in metajax's layout.
"""

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inp")
    parser.add_argument("out")
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--algorithm", choices=("maml", "fomaml"), required=True)
    parser.add_argument("--dtype", choices=("float32", "float64"), required=True)
    parser.add_argument("--lr", type=float, default=0.4)
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    data = np.load(args.inp)

    def to_torch(name: str, a: np.ndarray) -> np.ndarray:
        if name.endswith("kernel") and a.ndim == 4:
            return a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        if name.endswith("kernel") and a.ndim == 2:
            return a.T
        return a

    def from_torch(name: str, a: np.ndarray) -> np.ndarray:
        if name.endswith("kernel") and a.ndim == 4:
            return a.transpose(2, 3, 1, 0)
        if name.endswith("kernel") and a.ndim == 2:
            return a.T
        return a

    names = sorted(n for n in data.files if n.startswith("p:"))
    params = {n: torch.tensor(to_torch(n, data[n]), dtype=dtype, requires_grad=True) for n in names}

    def forward(p, x):
        x = x.permute(0, 3, 1, 2)
        for i in range(4):
            x = F.conv2d(x, p[f"p:Conv_{i}/kernel"], p[f"p:Conv_{i}/bias"], padding=1)
            x = F.batch_norm(
                x, None, None, p[f"p:RefBatchNorm_{i}/scale"], p[f"p:RefBatchNorm_{i}/bias"], training=True, eps=1e-5
            )
            x = F.relu(F.max_pool2d(x, 2))
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return F.linear(x, p["p:head/kernel"], p["p:head/bias"])

    xs, xq = (torch.tensor(data[n], dtype=dtype) for n in ("xs", "xq"))
    ys, yq = (torch.tensor(data[n]).long() for n in ("ys", "yq"))
    first_order = args.algorithm == "fomaml"
    per_task: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for t in range(xs.shape[0]):
        fast = dict(params)
        for _ in range(args.k):
            loss = F.cross_entropy(forward(fast, xs[t]), ys[t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {
                n: v - args.lr * (g.detach() if first_order else g)
                for (n, v), g in zip(fast.items(), grads, strict=True)
            }
        query = F.cross_entropy(forward(fast, xq[t]), yq[t])
        wrt = list(fast.values()) if first_order else list(params.values())
        for n, g in zip(names, torch.autograd.grad(query, wrt), strict=True):
            per_task[n].append(from_torch(n, g.detach().numpy()))
    np.savez(args.out, **{n: np.stack(v) for n, v in per_task.items()})


if __name__ == "__main__":
    main()
