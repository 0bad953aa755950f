"""StyleGAN2 training with NVIDIA's own code: one minibatch (`NvidiaTrainStep`, the training-speed benchmark) and its
whole `training_loop()` on the CPU (`run_training_loop`, the multi-step parity fixture), with `DrawLog` supplying and
recording every random draw.

NVIDIA's stylegan2-ada-pytorch is NOT part of this repository; point `NVIDIA_SG2ADA_DIR` (or the
`nvidia_dir` argument) at a checkout. Its networks and `training/loss.py` StyleGAN2Loss are imported
from there and driven the way its `training_loop.py` drives them: phases Gmain, Greg (every
pl_interval), Dmain, Dreg (every r1_interval), each zero_grad -> accumulate_gradients -> nan_to_num
on the grads -> Adam step with the lazy-regularisation correction, then the G_ema update. On CPU its
custom ops fall back to their reference implementations by themselves; conv2d_gradfix is switched off
because its custom op only exists for CUDA with torch 1.7-1.9.
"""
from __future__ import annotations

import copy
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

NVIDIA_ENV = "NVIDIA_SG2ADA_DIR"


def nvidia_dir_from_env() -> str | None:
    return os.environ.get(NVIDIA_ENV) or None


def import_nvidia(nvidia_dir: str):
    """(training.networks, training.loss, torch_utils.misc) from a checkout."""
    if not (Path(nvidia_dir) / "training" / "loss.py").is_file():
        raise SystemExit(f"error: {NVIDIA_ENV}={nvidia_dir} has no training/loss.py; "
                         "expected a stylegan2-ada-pytorch checkout")
    if str(nvidia_dir) not in sys.path:
        sys.path.insert(0, str(nvidia_dir))
    from torch_utils import misc  # noqa: PLC0415
    from torch_utils.ops import conv2d_gradfix  # noqa: PLC0415
    conv2d_gradfix.enabled = False
    from training import loss, networks  # noqa: PLC0415
    return networks, loss, misc


class NvidiaTrainStep:
    """NVIDIA's per-minibatch training work for the given G/D kwargs and our `train` config section.

    `init_from` (optional) is a module with G, D, G_ema whose weights are copied in (the state-dict keys
    are NVIDIA's), so both implementations start from the same point.
    """

    def __init__(self, nvidia_dir: str, G_kwargs: dict, D_kwargs: dict, train: dict, init_from=None,
                 device: str = "cpu"):
        networks, loss, self.misc = import_nvidia(nvidia_dir)
        self.device = torch.device(device)
        self.G = networks.Generator(**copy.deepcopy(G_kwargs)).train().requires_grad_(False).to(self.device)
        self.D = networks.Discriminator(**copy.deepcopy(D_kwargs)).train().requires_grad_(False).to(self.device)
        if init_from is not None:
            self.G.load_state_dict(init_from.G.state_dict())
            self.D.load_state_dict(init_from.D.state_dict())
        self.G_ema = copy.deepcopy(self.G).eval()
        self.batch_size = int(train["batch_size"])
        self.loss = loss.StyleGAN2Loss(
            device=self.device, G_mapping=self.G.mapping, G_synthesis=self.G.synthesis, D=self.D,
            style_mixing_prob=train["style_mixing"], r1_gamma=train["r1_gamma"],
            pl_batch_shrink=train["pl_batch_shrink"], pl_decay=train["pl_decay"], pl_weight=train["pl_weight"])
        self.phases = []
        for name, module, lr, interval in (("G", self.G, train["g_lr"], train["pl_interval"]),
                                           ("D", self.D, train["d_lr"], train["r1_interval"])):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=[b ** ratio for b in train["betas"]],
                                   eps=train["eps"])
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.ema_kimg = train["ema_kimg"] if train.get("ema_kimg") is not None else self.batch_size * 10 / 32
        self.ema_rampup = train.get("ema_rampup")
        self.cur_nimg = 0
        self.batch_idx = 0
        self.phase_seconds = defaultdict(float)  # phase name (and "Gema") -> seconds spent, for profiles

    def __call__(self, real_img: torch.Tensor) -> None:
        """One minibatch: float NCHW reals in [-1, 1]."""
        n = self.batch_size
        real_img = real_img.to(self.device, torch.float32)
        real_c = torch.zeros([n, 0], device=self.device)
        all_gen_z = torch.randn([len(self.phases) * n, self.G.z_dim], device=self.device).split(n)
        for (name, module, opt, interval), gen_z in zip(self.phases, all_gen_z):
            if self.batch_idx % interval != 0:
                continue
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(phase=name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=real_c,
                                           sync=True, gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    self.misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            opt.step()
            self.phase_seconds[name] += time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            ema_nimg = self.ema_kimg * 1000
            if self.ema_rampup is not None:
                ema_nimg = min(ema_nimg, self.cur_nimg * self.ema_rampup)
            beta = 0.5 ** (n / max(ema_nimg, 1e-8))
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.phase_seconds["Gema"] += time.perf_counter() - start
        self.cur_nimg += n
        self.batch_idx += 1


# ----------------------------------------------------------------------------------------- NVIDIA's real loop
class DrawLog:
    """Supplies, and records, every torch random draw made while active, so another implementation can be fed the
    same numbers. Normal draws are k/32 with k an int8 (exact in fp32, one byte each in a fixture), uniform draws
    float32, integer draws int64 with their range. Draws are filed under `label` (None: supplied, not kept).
    Random functions not supplied here raise, so no draw goes unrecorded; the global generator is never used.
    A subclass with NORMAL_SCALE = None supplies plain float32 normal draws (a run that is measured, not replayed)."""

    NORMAL_SCALE: int | None = 32

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)
        self.label = None
        self.log: dict = defaultdict(list)  # label -> [(kind, value, low, high)]
        self.unlabelled: list = []  # (kind, value) of draws made with label None, in order

    # the values
    def _supply(self, kind: str, shape, low=None, high=None) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        if kind == "normal" and self.NORMAL_SCALE is None:
            value = self._orig["randn"](shape, generator=self.gen)
        elif kind == "normal":
            k = (self._orig["randn"](shape, generator=self.gen) * self.NORMAL_SCALE).round().clamp(-127, 127)
            value = k / self.NORMAL_SCALE
        elif kind == "uniform":
            value = self._orig["rand"](shape, generator=self.gen)
        else:
            value = self._orig["randint"](low, high, shape, generator=self.gen)
        if self.label is None:
            self.unlabelled.append((kind, value))
        else:
            self.log[self.label].append((kind, value, low, high))
        return value.clone()

    @staticmethod
    def _shape(size) -> tuple:
        return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple, torch.Size)) else tuple(size)

    def __enter__(self):
        self._orig = {name: getattr(torch, name) for name in RANDOM_FUNCTIONS}
        self._orig_tensor = {name: getattr(torch.Tensor, name) for name in RANDOM_METHODS}
        log = self

        def make(kind, like=False):
            def draw(*args, dtype=None, device=None, generator=None, **kw):
                if like:
                    x = args[0]
                    return log._supply(kind, x.shape).to(dtype or x.dtype).to(device or x.device)
                return log._supply(kind, log._shape(args)).to(dtype or torch.float32).to(device or "cpu")
            return draw

        def randint(*args, size=None, dtype=None, device=None, generator=None, **kw):
            args = list(args)
            if size is None:
                size = args.pop()
            low, high = (0, args[0]) if len(args) == 1 else args
            return log._supply("int", size, int(low), int(high)).to(dtype or torch.int64).to(device or "cpu")

        def random_(self, *args, generator=None, **kw):
            low, high = (0, 2 ** 62) if not args else (0, args[0]) if len(args) == 1 else args
            with torch.no_grad():
                return self.copy_(log._supply("int", self.shape, int(low), int(high)))

        def refuse(name):
            def fail(*args, **kw):
                raise RuntimeError(f"unrecorded random draw: {name}; teach DrawLog and the test's replay about it")
            return fail

        torch.randn, torch.randn_like = make("normal"), make("normal", like=True)
        torch.rand, torch.rand_like = make("uniform"), make("uniform", like=True)
        torch.randint = randint
        torch.Tensor.random_ = random_
        for name in RANDOM_FUNCTIONS[5:]:
            setattr(torch, name, refuse(f"torch.{name}"))
        for name in RANDOM_METHODS[1:]:
            setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
        return self

    def __exit__(self, *exc):
        for name, fn in self._orig.items():
            setattr(torch, name, fn)
        for name, fn in self._orig_tensor.items():
            setattr(torch.Tensor, name, fn)


RANDOM_FUNCTIONS = ("randn", "randn_like", "rand", "rand_like", "randint", "randint_like", "randperm", "normal",
                    "bernoulli", "multinomial", "poisson")
RANDOM_METHODS = ("random_", "normal_", "uniform_", "bernoulli_", "exponential_", "geometric_", "cauchy_",
                  "log_normal_")


class _NoEvent:
    def __init__(self, *args, **kwargs):
        pass

    def record(self, *args):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return 0.0


class _TorchOnCpu:
    """training_loop's view of torch: the CUDA device is the CPU; CUDA events and memory statistics do nothing."""

    cuda = type("cuda", (), dict(Event=_NoEvent, current_stream=staticmethod(lambda *a: None),
                                 max_memory_allocated=staticmethod(lambda *a: 0),
                                 reset_peak_memory_stats=staticmethod(lambda *a: None)))

    @staticmethod
    def device(*args, **kwargs):
        return torch.device("cpu")

    def __getattr__(self, name):
        return getattr(torch, name)


def run_training_loop(nvidia_dir: str, run_dir: str, images, G_kwargs: dict, D_kwargs: dict, loop_kwargs: dict,
                      start: dict, draws: DrawLog, num_minibatches: int, random_seed: int = 0,
                      xflip: bool = False) -> dict:
    """Run NVIDIA's own `training_loop.training_loop()` for `num_minibatches` minibatches on the CPU and report what it
    did. `images` is a uint8 NCHW array (the training set), `start` the NVIDIA modules G, D, G_ema it resumes from
    (its --resume path: `resume_pkl`), `loop_kwargs` the loop's other arguments (batch size, optimizers, loss, EMA,
    augmentation, ADA), `random_seed` the seed of its data order (InfiniteSampler) and `xflip` its --mirror.
    CPU shims, none of which changes the training arithmetic: torch.device('cuda') is the CPU,
    CUDA events / memory stats / pin_memory do nothing, torch.utils.data.Sampler takes NVIDIA's InfiniteSampler's
    argument again (torch 2 dropped it), psutil may be a stub, and `misc.print_module_summary` is a
    no-op: it only prints a table, but it runs G in training mode on `torch.empty` (uninitialised) latents, which
    moves G.mapping.w_avg by 0.5 % towards whatever memory held. Every torch random draw goes through `draws`.

    Returns per minibatch: the float reals, all_gen_z, each phase's draws and ADA's p before it; and the final G, D,
    G_ema state dicts, pl_mean, p, each ADA adjustment's (minibatches done, r_t, number of signs) and each report of
    real-logit signs ((minibatch, phase), sum, count)."""
    import pickle
    import types

    if str(nvidia_dir) not in sys.path:
        sys.path.insert(0, str(nvidia_dir))
    sys.modules.setdefault("psutil", types.SimpleNamespace(Process=lambda *a: types.SimpleNamespace(
        memory_info=lambda: types.SimpleNamespace(rss=0))))
    import dnnlib  # noqa: PLC0415
    import legacy  # noqa: PLC0415
    from torch_utils import misc, training_stats  # noqa: PLC0415
    from training import dataset, loss, training_loop  # noqa: PLC0415

    class ArrayDataset(dataset.Dataset):
        def __init__(self, images, **kwargs):
            self._images = images
            super().__init__(name="array", raw_shape=images.shape, **kwargs)

        def _load_raw_image(self, raw_idx):
            return self._images[raw_idx]

        def _load_raw_labels(self):
            return None

    sys.modules["_nvidia_loop_data"] = types.SimpleNamespace(ArrayDataset=ArrayDataset)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = run_dir / "start.pkl"
    with open(resume, "wb") as f:
        pickle.dump(dict(start), f)

    made = {}  # class_name -> the object NVIDIA's loop constructed
    augment_class = (loop_kwargs.get("augment_kwargs") or {}).get("class_name")
    minibatches, adjustments, pending, signs = [], [], [], []
    construct = dnnlib.util.construct_class_by_name
    accumulate = loss.StyleGAN2Loss.accumulate_gradients
    Collector, report = training_stats.Collector, training_stats.report
    saved = dict(torch=training_loop.torch, summary=misc.print_module_summary, pin=torch.Tensor.pin_memory,
                 sampler=torch.utils.data.Sampler.__init__)

    def constructing(*args, class_name=None, **kwargs):
        made[class_name] = obj = construct(*args, class_name=class_name, **kwargs)
        return obj

    def labelled(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        if phase in ("Gmain", "Gboth"):  # a new minibatch: its all_gen_z is the last draw outside the phases
            assert pending and (not minibatches or len(pending) == 1), "expected one z draw between minibatches"
            kind, z = pending[-1]
            pipe = made.get(augment_class)
            minibatches.append(dict(real=real_img.detach().clone(), z=z, draws={},
                                    p=float(pipe.p) if pipe is not None else None))
            pending.clear()
        draws.label = (len(minibatches) - 1, phase)
        try:
            return accumulate(self, phase, real_img, real_c, gen_z, gen_c, sync, gain)
        finally:
            draws.label = None

    def reporting(name, value):
        if name == "Loss/signs/real":  # which phase reported which signs (NVIDIA's r_t sums them all)
            signs.append((draws.label, float(value.detach().sum()), value.numel()))
        return report(name, value)

    class Recording(Collector):
        def update(self):
            super().update()
            if self._regex.pattern == "Loss/signs/real" and self.num("Loss/signs/real") > 0:
                adjustments.append((len(minibatches), self.mean("Loss/signs/real"), self.num("Loss/signs/real")))

    training_stats._counters.clear()
    training_stats._cumulative.clear()
    kwargs = dict(loop_kwargs, run_dir=str(run_dir), resume_pkl=str(resume), metrics=[], random_seed=random_seed,
                  num_gpus=1, rank=0,
                  training_set_kwargs=dict(class_name="_nvidia_loop_data.ArrayDataset", images=images, xflip=xflip),
                  data_loader_kwargs={}, G_kwargs=dict(G_kwargs, class_name="training.networks.Generator"),
                  D_kwargs=dict(D_kwargs, class_name="training.networks.Discriminator"),
                  total_kimg=(num_minibatches * loop_kwargs["batch_size"] - 0.5) / 1000, image_snapshot_ticks=None,
                  network_snapshot_ticks=1)
    torch.manual_seed(random_seed)  # what the loop seeds the global generator with: DrawLog must leave it there
    global_rng = torch.get_rng_state()
    try:
        training_loop.torch = _TorchOnCpu()
        misc.print_module_summary = lambda module, inputs, **kw: torch.zeros(
            [inputs[0].shape[0], module.img_channels, module.img_resolution, module.img_resolution]) \
            if hasattr(module, "synthesis") else None
        torch.Tensor.pin_memory = lambda self, *a, **k: self
        torch.utils.data.Sampler.__init__ = lambda self, *a, **k: None  # torch 2 dropped its data_source argument
        dnnlib.util.construct_class_by_name = constructing
        loss.StyleGAN2Loss.accumulate_gradients = labelled
        training_stats.Collector = Recording
        training_stats.report = reporting
        draws.unlabelled = pending
        with draws:
            training_loop.training_loop(**kwargs)
    finally:
        training_loop.torch = saved["torch"]
        misc.print_module_summary = saved["summary"]
        torch.Tensor.pin_memory = saved["pin"]
        torch.utils.data.Sampler.__init__ = saved["sampler"]
        dnnlib.util.construct_class_by_name = construct
        loss.StyleGAN2Loss.accumulate_gradients = accumulate
        training_stats.Collector, training_stats.report = Collector, report
    assert torch.equal(torch.get_rng_state(), global_rng), "a torch random draw bypassed DrawLog"
    assert len(minibatches) == num_minibatches, (len(minibatches), num_minibatches)
    for b, mb in enumerate(minibatches):
        mb["draws"] = {phase: draws.log.get((b, phase), []) for phase in ("Gmain", "Greg", "Dmain", "Dreg")}
    with open(final_snapshot(run_dir), "rb") as f:
        final = legacy.load_network_pkl(f)
    G, D = made["training.networks.Generator"], made["training.networks.Discriminator"]
    pipe = made.get(augment_class)
    return dict(minibatches=minibatches, adjustments=adjustments, signs=signs, pl_mean=made["training.loss.StyleGAN2Loss"].pl_mean,
                p=float(pipe.p) if pipe is not None else None,
                G={k: v.detach().clone() for k, v in G.state_dict().items()},
                D={k: v.detach().clone() for k, v in D.state_dict().items()},
                G_ema={k: v.detach().clone() for k, v in final["G_ema"].state_dict().items()})


def final_snapshot(run_dir) -> Path:
    """The loop's last network pickle: it snapshots after the first minibatch and then every 4 kimg, naming each file by
    the whole kimg done, so the newest name is the end of the run."""
    snapshots = sorted(Path(run_dir).glob("network-snapshot-*.pkl"))
    if not snapshots:
        raise FileNotFoundError(f"{run_dir}: NVIDIA's loop wrote no network-snapshot-*.pkl")
    return snapshots[-1]
