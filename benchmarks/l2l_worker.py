"""learn2learn 0.2.0 side of benchmarks/learn2learn_side_by_side.py (runs under a Python with torch).

    python benchmarks/l2l_worker.py --l2l-src DIR '{"algorithm": "maml", "k": 1, ...}'

Loads ``learn2learn.algorithms.maml`` (and ``learn2learn.utils``) straight from
the unpacked source release DIR without executing ``learn2learn/__init__.py``:
that file imports ``learn2learn.vision`` -> torchvision, which does not load
beside the CPU build of torch, and the compiled data extensions, which the
published sdist cannot build on Python 3.11. MAML itself is pure Python.
Prints one ``RESULT {json}`` line.
"""

import copy
import json
import os
import resource
import statistics
import sys
import time
import types


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_l2l_maml(src: str):
    for name, sub in (("learn2learn", ""), ("learn2learn.algorithms", "/algorithms")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [f"{src}/learn2learn{sub}"]
        sys.modules[name] = pkg
    from learn2learn.algorithms.maml import MAML

    return MAML


def conv4(torch, ways=5, filters=64):
    """learn2learn's OmniglotCNN layout: 4 x (3x3 conv pad 1, batch norm without running stats, ReLU, 2x2 max-pool)."""
    nn = torch.nn
    layers, c = [], 1
    for _ in range(4):
        layers += [
            nn.Conv2d(c, filters, 3, padding=1),
            nn.BatchNorm2d(filters, affine=True, momentum=0.999, eps=1e-3, track_running_stats=False),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        ]
        c = filters
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(filters, ways))


def main():
    src = sys.argv[sys.argv.index("--l2l-src") + 1]
    spec = json.loads(sys.argv[-1])
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    torch.manual_seed(0)
    MAML = load_l2l_maml(src)
    model = conv4(torch)
    t, k = spec["meta_batch"], spec["k"]
    xs, ys = torch.rand(t, 5, 1, 28, 28), torch.arange(5).repeat(t, 1)
    xq, yq = torch.rand(t, 75, 1, 28, 28), torch.arange(5).repeat_interleave(15).repeat(t, 1)
    loss_fn = torch.nn.CrossEntropyLoss()
    alg = spec["algorithm"]
    if alg in ("maml", "fomaml"):
        maml = MAML(model, lr=0.4, first_order=alg == "fomaml")
        opt = torch.optim.Adam(maml.parameters(), 1e-3)

        def meta_iteration():
            opt.zero_grad()
            for i in range(t):
                learner = maml.clone()
                for _ in range(k):
                    learner.adapt(loss_fn(learner(xs[i]), ys[i]))
                (loss_fn(learner(xq[i]), yq[i]) / t).backward()
            opt.step()
    elif alg == "reptile":
        # as learn2learn's Reptile example: per task, k SGD steps on a copy, then move to the mean
        def meta_iteration():
            old = [p.detach().clone() for p in model.parameters()]
            delta = [torch.zeros_like(p) for p in old]
            for i in range(t):
                learner = copy.deepcopy(model)
                inner = torch.optim.SGD(learner.parameters(), lr=0.4)
                for _ in range(k):
                    inner.zero_grad()
                    loss_fn(learner(xs[i]), ys[i]).backward()
                    inner.step()
                for d, p, o in zip(delta, learner.parameters(), old, strict=True):
                    d += (p.detach() - o) / t
            with torch.no_grad():
                for p, o, d in zip(model.parameters(), old, delta, strict=True):
                    p.copy_(o + d)
    else:
        raise ValueError(f"unknown algorithm {alg!r}")
    meta_iteration()  # warm-up
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        meta_iteration()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(
        "RESULT "
        + json.dumps(
            {
                **spec,
                "library": "learn2learn",
                "times_s": times,
                "s_per_it": med,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "steady_rss_mb": round(current_rss_mb(), 1),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
