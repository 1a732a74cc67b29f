"""The training loop: one stage, single process or under torchrun (PyTorch DDP), resumable.

A stage configuration (JSON, see train_configs/) holds:

    stage              i_frame | base | augment | joint
    data               {"type": "vimeo90k", "root", ["list"]} or {"type": "folders", "root", ...}
    sequence_length    frames per clip (I-frame + P-frames; 1 is enough for i_frame)
    crop               [h, w], multiples of 16
    batch_size         clips per step, over all processes
    steps              optimizer steps of the stage
    lr, lr_milestones, lr_gamma    Adam learning rate, multiplied by lr_gamma at each milestone step
    lambdas, frame_weights, layer_weight    the objective (sevc.training.losses)
    detach_every       cut the gradient through the references every N P-frames (0: never)
    init               {"i_frame": path or null, "p_frame": path or null}: weights to start from
    clip_grad_norm     null, or the largest gradient norm of a step (larger ones are scaled down to it)
    noisy_rate_steps   the first N steps of the stage estimate the rates on latents plus uniform
                       noise (a smooth start from fresh weights); later steps on the
                       straight-through rounded latents, the bits the stream pays (0: from the start)
    amp                null (float32), "bf16" or "fp16": mixed precision (torch.autocast; fp16 with a
                       gradient scaler)
    save_every, log_every, num_workers, seed    (the loss and numbers are read from the device
                       and logged every log_every steps)

The output folder receives `config.json` (the configuration), `i_frame.pth.tar` and
`p_frame.pth.tar` (state_dicts with the official checkpoints' keys: test.py, encoder.py and
decoder.py load them), `train_state.pt` (optimizer, scheduler, step, random states: `--resume`
continues exactly where it stopped) and `log.jsonl`, each recorded in the folder's manifest
(`sevc.io.outputs`): a folder holding anything else, or another run, is used only with
`overwrite`, and files sevc did not write are never replaced. The configuration (every entry's
type), data (every sequence's frame size), checkpoints, train state and output folder are all
checked before the output folder is created or written: a run that fails to start leaves it as
it was, and a new run that fails before its first save leaves nothing. A resumed run keeps its
own configuration (`config.json`) but for the RESUMABLE entries.
Each step trains one q anchor (step % 4) with its lambda.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import TrainingError
from ..io.outputs import Manifest, OutputKind, RecordedFolder, check_folder
from ..io.reading import load_json
from ..latent_codecs import use_noisy_rate
from ..models.intra import IntraNoAR
from ..models.sevc import SEVC
from ..numerics import Precision
from ..runtime import usable_cores
from ..weights.checkpoint import load_checkpoint, named_parameters
from .data import ClipDataset, ReadFailure, Reported, build_dataset, collate
from .losses import FRAME_WEIGHTS, LAMBDAS, LAYER_WEIGHT, Objective, summarize
from .stages import OBJECTIVES, STAGES, StageModel, positions_left_untrained, trained_names

DEFAULTS = {
    "sequence_length": 6, "crop": [256, 256], "batch_size": 8, "steps": 100000, "lr": 1e-4,
    "lr_milestones": [], "lr_gamma": 0.1, "lambdas": list(LAMBDAS), "frame_weights": list(FRAME_WEIGHTS),
    "layer_weight": LAYER_WEIGHT, "init": {"i_frame": None, "p_frame": None}, "save_every": 1000,
    "log_every": 10, "num_workers": 2, "seed": 0, "anchors": 4, "detach_every": 0, "amp": None,
    "clip_grad_norm": None, "noisy_rate_steps": 0,
}
AMP = {None: Precision.FP32, "bf16": Precision.BF16, "fp16": Precision.FP16}
COUNTS = {"sequence_length": 1, "batch_size": 1, "steps": 1, "save_every": 1, "log_every": 1, "anchors": 1,
          "num_workers": 0, "detach_every": 0, "seed": 0,
          "noisy_rate_steps": 0}  # integer entries and their smallest value
MODEL_FILES = {"i_frame": "i_frame.pth.tar", "p_frame": "p_frame.pth.tar"}
STATE_FILE = "train_state.pt"
STATE_KEYS = {"step", "optimizer", "scheduler", "scaler", "torch_rng", "stage"}
LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.json"
RUN = OutputKind("a training run", "|".join(map(re.escape, [CONFIG_FILE, LOG_FILE, STATE_FILE, *MODEL_FILES.values()])))
# what a resumed run may change
RESUMABLE = ("steps", "save_every", "log_every", "num_workers", "data.root", "noisy_rate_steps")


def load_config(path: str | os.PathLike, overrides: Optional[Dict] = None) -> Dict:
    """A stage configuration with the defaults filled in and `overrides` applied (a dict value
    updates the entries of a dict entry, e.g. {"data": {"root": ...}}); the file is read with a
    bound (see `sevc.io.reading.load_json`) and every entry's type checked."""
    loaded = load_json(path, "training configuration", TrainingError)
    if not isinstance(loaded, dict):
        raise TrainingError(f"{path} does not hold a JSON object")
    config = {**DEFAULTS, **loaded}
    for key, value in (overrides or {}).items():
        merge = isinstance(value, dict) and isinstance(config.get(key), dict)
        config[key] = {**config[key], **value} if merge else value
    _check_config(config, path)
    return config


def flatten(config: Dict, prefix: str = "") -> Dict[str, object]:
    """{dotted key: value} of a nested configuration ({"data": {"root": r}} -> {"data.root": r})."""
    flat: Dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _check_resumable(saved: Dict, config: Dict, output: Path) -> None:
    """TrainingError unless `config` is the run's saved configuration but for RESUMABLE entries."""
    if saved["stage"] != config["stage"]:
        raise TrainingError(f"{output} holds stage {saved['stage']}, not {config['stage']}")
    before, after = flatten(saved), flatten(config)
    changed = sorted(key for key in before.keys() | after.keys()
                     if key not in RESUMABLE and before.get(key) != after.get(key))
    if changed:
        shown = ", ".join(f"{key} ({json.dumps(before.get(key))} -> {json.dumps(after.get(key))})"
                          for key in changed[:4])
        more = " and more" if len(changed) > 4 else ""
        raise TrainingError(f"a resumed run keeps its configuration ({output / CONFIG_FILE}) but for "
                            f"{', '.join(RESUMABLE)}; this one changes {shown}{more}: resume without --config "
                            "(and --set only those), or start a new run")


def resume_config(output: str | os.PathLike, overrides: Optional[Dict] = None) -> Dict:
    """The configuration a run in `output` resumes with: its own `config.json`, with `overrides`."""
    path = Path(output) / CONFIG_FILE
    if not os.path.lexists(path):
        raise TrainingError(f"nothing to resume in {output} (no {CONFIG_FILE})")
    return load_config(path, overrides)


def _number(value: object, low: float = -math.inf) -> bool:
    """A finite JSON number (not a bool) of at least `low`."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def _numbers(value: object, low: float) -> bool:
    """A non-empty list of finite numbers of at least `low`."""
    return isinstance(value, list) and bool(value) and all(_number(v, low) for v in value)


VALUES = {  # entries: (the test each passes, what it must be)
    "lr": (lambda v: _number(v) and v > 0, "a positive number"),
    "lr_gamma": (lambda v: _number(v) and v > 0, "a positive number"),
    "clip_grad_norm": (lambda v: v is None or (_number(v) and v > 0), "null or a positive number"),
    "layer_weight": (lambda v: _number(v, 0), "a number >= 0"),
    "lambdas": (lambda v: _numbers(v, 0) and all(x > 0 for x in v), "a list of positive numbers"),
    "frame_weights": (lambda v: _numbers(v, 0), "a non-empty list of numbers >= 0"),
    "lr_milestones": (lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                           for x in v), "a list of step numbers (integers >= 1)"),
}


def _check_config(config: Dict, path: str | os.PathLike) -> None:
    """Every entry training reads is there and of the right kind (data and files are checked later)."""
    if config.get("stage") not in STAGES:
        raise TrainingError(f"{path}: \"stage\" must be one of {', '.join(STAGES)}")
    for key in ("data", "init"):
        if not isinstance(config.get(key), dict):
            raise TrainingError(f"{path}: \"{key}\" must be an object, got {config.get(key)!r}")
    if not isinstance(config["data"].get("root"), str):
        raise TrainingError(f"{path}: \"data\" needs a \"root\" folder (a string)")
    for name, source in config["init"].items():
        if source is not None and not isinstance(source, str):
            raise TrainingError(f"{path}: init.{name} must be a checkpoint path or null, got {json.dumps(source)}")
    for key, (valid, meaning) in VALUES.items():
        if not valid(config[key]):
            raise TrainingError(f"{path}: {key} must be {meaning}, got {json.dumps(config[key])}")
    crop = config["crop"]
    if not (isinstance(crop, list) and len(crop) == 2 and all(isinstance(c, int) and c > 0 and not c % 16 for c in crop)):
        raise TrainingError(f"crop {crop} must be [height, width], positive multiples of 16")
    _check_counts(config)
    if config["amp"] not in AMP:
        raise TrainingError(f"amp must be null, \"bf16\" or \"fp16\", got {config['amp']!r}")
    minimum = 1 if config["stage"] == "i_frame" else 2
    if config["sequence_length"] < minimum:
        raise TrainingError(f"stage {config['stage']} needs sequence_length >= {minimum}")


def _check_counts(config: Dict) -> None:
    """The integer entries are integers in range; there is a lambda for each q anchor."""
    for key, low in COUNTS.items():
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise TrainingError(f"{key} must be an integer >= {low}, got {value!r}")
    most = min(len(config["lambdas"]), len(LAMBDAS))
    if config["anchors"] > most:
        raise TrainingError(f"anchors must be at most {most} (one lambda per q anchor), got {config['anchors']}")


class Distributed:
    """torchrun's process group (or a single process): rank, world size, device."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world_size > 1:
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item() / self.world_size

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


def _models(config: Dict, output: Path, resume: bool) -> Tuple[IntraNoAR, SEVC]:
    """Both models, from the output folder's weights when resuming, else from `init`, or fresh:
    a fresh model the stage trains starts its q anchors apart (`spread_q_scales`)."""
    torch.manual_seed(config["seed"])
    i_frame, p_frame = IntraNoAR(), SEVC()
    for name, model in (("i_frame", i_frame), ("p_frame", p_frame)):
        source = output / MODEL_FILES[name] if resume else config["init"].get(name)
        if source:
            load_checkpoint(model, source)
        elif (name == "i_frame") == (config["stage"] == "i_frame"):
            spread_q_scales(model, config["lambdas"][:config["anchors"]], trained_names(config["stage"], model))
    return i_frame, p_frame


def spread_q_scales(model: torch.nn.Module, lambdas: Sequence[float], names: Sequence[str]) -> None:
    """Set the per-anchor encoder q scales among the parameters `names` of a fresh model for the
    anchors' lambdas. Fresh models hold ones (as the published models are initialised), so a short
    run codes every anchor at one rate; for MSE the best quantization step shrinks as
    1/sqrt(lambda), so anchor a starts with encoder scale sqrt(lambda_a / G) (G: the geometric mean
    of the lambdas). Decoder scales (and anchors beyond the lambdas) keep their values: the decoder
    learns the inverse."""
    weights = torch.tensor(lambdas, dtype=torch.float64)
    scales = (weights / weights.log().mean().exp()).sqrt().float()
    wanted = set(names)
    with torch.no_grad():
        for name, parameter in named_parameters(model).items():
            if name.endswith("q_scale_enc") and name in wanted:
                count = min(len(scales), parameter.shape[0])
                parameter[:count] = scales[:count].reshape(-1, 1, 1, 1)


def _check_output(output: Path, resume: bool, overwrite: bool, inputs: Iterable[str | os.PathLike]) -> None:
    """The output folder can be used (see `sevc.io.outputs`): a new run goes into a new folder, one
    of an earlier run only with `overwrite`; a resumed one into its own run (a train state there)."""
    if os.path.lexists(output) and not output.is_dir():
        raise TrainingError(f"output path is not a folder: {output}")
    if resume and not (output / STATE_FILE).is_file():
        raise TrainingError(f"nothing to resume in {output} (no {STATE_FILE})")
    if not resume and not overwrite and output.is_dir():
        manifest = Manifest.read(output)
        if manifest is not None and manifest.kind == RUN.name and manifest.files:
            raise TrainingError(f"{output} holds a training run; pass --resume to continue it, or --overwrite to "
                                "start it over (its files are then replaced)")
    check_folder(output, RUN, overwrite, inputs)


def _dataset(config: Dict, world_size: int) -> ClipDataset:
    """The stage's dataset, checked: enough clips for a batch, every sequence's frames at least as
    large as the crop, its first clip readable."""
    if config["batch_size"] % world_size:
        raise TrainingError(f"batch_size {config['batch_size']} is not a multiple of {world_size} processes")
    dataset = build_dataset(config["data"], config["sequence_length"], config["crop"], config["seed"])
    if len(dataset) < config["batch_size"]:
        count = len(dataset)
        raise TrainingError(f"{count} clip{'' if count == 1 else 's'} {'is' if count == 1 else 'are'} fewer than one "
                            f"batch of {config['batch_size']}")
    dataset.check()
    return dataset


def _workers(requested: int) -> int:
    """DataLoader workers: as many as asked, but no more than the cores this process may use."""
    return min(requested, usable_cores())


def _train_state(output: Path, stage: str) -> Dict:
    """The train state `--resume` continues from, checked to be one of `stage`."""
    path = output / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not a train state"
        raise TrainingError(f"{path} is not a readable train state ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not STATE_KEYS <= set(state):
        raise TrainingError(f"{path} is not a train state (keys {', '.join(sorted(STATE_KEYS))})")
    if state["stage"] != stage:
        raise TrainingError(f"{output} holds stage {state['stage']}, not {stage}")
    return state


def _optimizer(config: Dict, stage_model: StageModel, state: Optional[Dict],
               source: Path) -> Tuple[torch.optim.Adam, torch.optim.lr_scheduler.MultiStepLR]:
    """Adam and its learning-rate schedule, restored from `state` (read from `source`) if given."""
    optimizer = torch.optim.Adam(list(stage_model.trained_parameters()), lr=config["lr"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config["lr_milestones"], config["lr_gamma"])
    if state is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{source} does not fit stage {config['stage']}: {exc}") from None
    return optimizer, scheduler


def _start_output(folder: RecordedFolder, config: Dict, resume: bool, overwrite: bool,
                  inputs: Iterable[str | os.PathLike]) -> None:
    """Create the output folder (a new run: without an earlier run's files) and record the
    configuration (after every check has passed)."""
    folder.open(fresh=not resume, overwrite=overwrite, inputs=inputs)
    with folder.replace(CONFIG_FILE) as path:
        path.write_text(json.dumps(config, indent=2))


def _batches(length: int, batch: int, epoch: int, seed: int, rank: int, world: int) -> List[List[int]]:
    """This process's share of each batch of one epoch (the same permutation on every process)."""
    order = torch.randperm(length, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
    usable = len(order) - len(order) % batch
    return [order[start:start + batch][rank::world] for start in range(0, usable, batch)]


def _save(folder: RecordedFolder, stage_model: StageModel, optimizer, scheduler, scaler, step: int) -> None:
    for name in MODEL_FILES:
        with folder.replace(MODEL_FILES[name]) as path:
            torch.save(getattr(stage_model, name).state_dict(), path)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "torch_rng": torch.random.get_rng_state(), "stage": stage_model.stage}
    with folder.replace(STATE_FILE) as path:
        torch.save(state, path)


def train(config: Dict, output: str | os.PathLike, resume: bool = False, overwrite: bool = False,
          inputs: Iterable[str | os.PathLike] = ()) -> Dict[str, float]:
    """Run (or resume) one stage; returns the last logged numbers. `overwrite`: a folder holding
    other files, or an earlier run, may be used (see the module's docstring); `inputs` (the
    configuration file) are never written."""
    env = Distributed()
    try:
        return _train(config, Path(output), resume, overwrite, [*inputs, *filter(None, config["init"].values())], env)
    finally:
        env.close()


def _train(config: Dict, output: Path, resume: bool, overwrite: bool, inputs: List,
           env: Distributed) -> Dict[str, float]:
    _check_output(output, resume, overwrite, inputs)
    if resume:
        _check_resumable(resume_config(output), config, output)
    dataset = _dataset(config, env.world_size)
    state = _train_state(output, config["stage"]) if resume else None
    objective = Objective(OBJECTIVES[config["stage"]], config["lambdas"], config["frame_weights"],
                          config["layer_weight"])
    stage_model = StageModel(config["stage"], *_models(config, output, resume), objective,
                             config["detach_every"]).to(env.device)
    optimizer, scheduler = _optimizer(config, stage_model, state, output / STATE_FILE)
    scaler = torch.amp.GradScaler(env.device.type, enabled=AMP[config["amp"]] is Precision.FP16)
    if state is not None:
        scaler.load_state_dict(state["scaler"])
    torch.manual_seed(config["seed"] + env.rank)
    step = 0
    if state is not None:
        step = state["step"]
        torch.random.set_rng_state(state["torch_rng"])
    folder = RecordedFolder(output, RUN)
    if env.main:
        _start_output(folder, config, resume, overwrite, inputs)
        _warn_untrained_positions(config)
    env.barrier()
    try:
        return _loop(config, folder, stage_model, dataset, (optimizer, scheduler, scaler), step, env)
    except BaseException:
        if env.main and not resume and STATE_FILE not in folder.written:
            folder.discard()
        raise


def _warn_untrained_positions(config: Dict) -> None:
    """A P-frame stage on short clips leaves the feature adaptors of later positions as they started
    (from fresh weights, those positions then code badly): say so on stderr."""
    untrained = positions_left_untrained(config["sequence_length"]) if config["stage"] != "i_frame" else []
    if untrained:
        print(f"warning: clips of {config['sequence_length']} frames never train the feature adaptors of P-frames "
              f"at positions {', '.join(map(str, untrained))} after an I-frame (nor those 4, 8, ... later); "
              "sequence_length 6 trains them all", file=sys.stderr)


def _loop(config: Dict, folder: RecordedFolder, stage_model: StageModel, dataset: ClipDataset, optimizers: Tuple,
          step: int, env: Distributed) -> Dict[str, float]:
    """Train from `step` to the configuration's last step; returns the last logged numbers."""
    network = stage_model
    if env.world_size > 1:
        network = DistributedDataParallel(stage_model, find_unused_parameters=True,
                                          device_ids=[env.device.index] if env.device.type == "cuda" else None)
    network.train()
    batches_per_epoch = len(dataset) // config["batch_size"]
    workers = _workers(config["num_workers"])
    use_noisy_rate(stage_model.trained, step < config["noisy_rate_steps"])
    last: Dict[str, float] = {}
    while step < config["steps"]:
        epoch, offset = divmod(step, batches_per_epoch)
        dataset.set_epoch(epoch)
        plan = _batches(len(dataset), config["batch_size"], epoch, config["seed"], env.rank, env.world_size)
        plan = plan[offset:offset + config["steps"] - step]
        loader = DataLoader(Reported(dataset), batch_sampler=plan, num_workers=workers, collate_fn=collate)
        bar = tqdm(loader, desc=f"{config['stage']} epoch {epoch}", unit="step", file=sys.stderr,
                   disable=not env.main, initial=offset, total=batches_per_epoch)
        for clips in bar:
            if isinstance(clips, ReadFailure):
                raise TrainingError(clips.message)
            anchor = step % config["anchors"]
            started = time.time()
            loss, terms = _step(network, clips.to(env.device), anchor, AMP[config["amp"]], optimizers, env,
                                config["clip_grad_norm"])
            step += 1
            if step == config["noisy_rate_steps"]:  # the warm-up ends: rates on rounded latents
                use_noisy_rate(stage_model.trained, False)
            logged = step % config["log_every"] == 0 or step == config["steps"]
            saved = step % config["save_every"] == 0 or step == config["steps"]
            if (logged or saved) and not torch.isfinite(loss):  # a NaN step leaves NaN weights: caught before a save
                raise TrainingError(f"the loss is {loss.item()} at step {step}: training diverged (lower lr, or set "
                                    "clip_grad_norm); the weights saved last are kept")
            if logged:
                numbers = {"loss": env.mean(loss.item()), **{k: env.mean(v) for k, v in summarize(terms).items()}}
                bar.set_postfix({k: round(v, 4) for k, v in numbers.items()})
                last = {"step": step, "epoch": epoch, "anchor": anchor, "lr": optimizers[1].get_last_lr()[0],
                        "seconds": time.time() - started, **numbers}
                if env.main:
                    folder.append(LOG_FILE, json.dumps(last) + "\n")
            if saved:
                if env.main:
                    _save(folder, stage_model, *optimizers, step)
                env.barrier()
        bar.close()
    return last


def _step(network, clips: torch.Tensor, anchor: int, precision: Precision, optimizers: Tuple, env: Distributed,
          clip_grad_norm: Optional[float] = None):
    """One optimizer step on a batch of clips: (loss, per-frame terms)."""
    optimizer, scheduler, scaler = optimizers
    with precision.autocast(env.device.type):
        loss, terms = network(clips, anchor)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad_norm is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]],
                                       clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss, terms
