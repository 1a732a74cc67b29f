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
    amp                null (float32), "bf16" or "fp16": mixed precision (torch.autocast; fp16 with a
                       gradient scaler)
    save_every, log_every, num_workers, seed    (the loss and numbers are read from the device
                       and logged every log_every steps)

The output folder receives `i_frame.pth.tar` and `p_frame.pth.tar` (state_dicts with the official
checkpoints' keys: test.py, encoder.py and decoder.py load them), `train_state.pt` (optimizer,
scheduler, step, random states: `--resume` continues exactly where it stopped) and `log.jsonl`.
The configuration, data, checkpoints and train state are all checked before the output folder
is created or written: a run that fails to start leaves it as it was.
Each step trains one q anchor (step % 4) with its lambda.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..errors import TrainingError
from ..io.outputs import atomic_file
from ..models.checkpoint import load_checkpoint
from ..models.intra import IntraNoAR
from ..models.sevc import SEVC
from ..numerics import Precision
from .data import ClipDataset, build_dataset
from .losses import FRAME_WEIGHTS, LAMBDAS, LAYER_WEIGHT, Objective, summarize
from .stages import OBJECTIVES, STAGES, StageModel

DEFAULTS = {
    "sequence_length": 6, "crop": [256, 256], "batch_size": 8, "steps": 100000, "lr": 1e-4,
    "lr_milestones": [], "lr_gamma": 0.1, "lambdas": list(LAMBDAS), "frame_weights": list(FRAME_WEIGHTS),
    "layer_weight": LAYER_WEIGHT, "init": {"i_frame": None, "p_frame": None}, "save_every": 1000,
    "log_every": 10, "num_workers": 2, "seed": 0, "anchors": 4, "detach_every": 0, "amp": None,
}
AMP = {None: Precision.FP32, "bf16": Precision.BF16, "fp16": Precision.FP16}
COUNTS = {"sequence_length": 1, "batch_size": 1, "steps": 1, "save_every": 1, "log_every": 1, "anchors": 1,
          "num_workers": 0, "detach_every": 0, "seed": 0}  # integer entries and their smallest value
MODEL_FILES = {"i_frame": "i_frame.pth.tar", "p_frame": "p_frame.pth.tar"}
STATE_FILE = "train_state.pt"
STATE_KEYS = {"step", "optimizer", "scheduler", "scaler", "torch_rng", "stage"}
LOG_FILE = "log.jsonl"


def load_config(path: str | os.PathLike, overrides: Optional[Dict] = None) -> Dict:
    """A stage configuration with the defaults filled in and `overrides` applied (a dict value
    updates the entries of a dict entry, e.g. {"data": {"root": ...}})."""
    try:
        loaded = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise TrainingError(f"{path} does not hold a JSON object")
    config = {**DEFAULTS, **loaded}
    for key, value in (overrides or {}).items():
        merge = isinstance(value, dict) and isinstance(config.get(key), dict)
        config[key] = {**config[key], **value} if merge else value
    _check_config(config, path)
    return config


def _check_config(config: Dict, path: str | os.PathLike) -> None:
    """Every entry training reads is there and of the right kind (data and files are checked later)."""
    if config.get("stage") not in STAGES:
        raise TrainingError(f"{path}: \"stage\" must be one of {', '.join(STAGES)}")
    for key in ("data", "init"):
        if not isinstance(config.get(key), dict):
            raise TrainingError(f"{path}: \"{key}\" must be an object, got {config.get(key)!r}")
    if "root" not in config["data"]:
        raise TrainingError(f"{path}: \"data\" has no \"root\"")
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
    """Both models, from the output folder's weights when resuming, else from `init` (or fresh)."""
    torch.manual_seed(config["seed"])
    i_frame, p_frame = IntraNoAR(), SEVC()
    for name, model in (("i_frame", i_frame), ("p_frame", p_frame)):
        source = output / MODEL_FILES[name] if resume else config["init"].get(name)
        if source:
            load_checkpoint(model, source)
    return i_frame, p_frame


def _check_output(output: Path, resume: bool) -> None:
    """The output folder can be used: not a file; when resuming, a folder with a train state."""
    if output.exists() and not output.is_dir():
        raise TrainingError(f"output path is not a folder: {output}")
    if resume and not (output / STATE_FILE).is_file():
        raise TrainingError(f"nothing to resume in {output} (no {STATE_FILE})")


def _dataset(config: Dict, world_size: int) -> ClipDataset:
    """The stage's dataset, checked: enough clips for a batch, its first clip readable and cropped."""
    if config["batch_size"] % world_size:
        raise TrainingError(f"batch_size {config['batch_size']} is not a multiple of {world_size} processes")
    dataset = build_dataset(config["data"], config["sequence_length"], config["crop"], config["seed"])
    if len(dataset) < config["batch_size"]:
        raise TrainingError(f"{len(dataset)} clips are fewer than one batch of {config['batch_size']}")
    dataset[0]  # one clip read and cropped: unreadable frames or frames smaller than the crop fail here
    return dataset


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


def _start_output(output: Path, config: Dict) -> None:
    """Create the output folder and record the configuration (after every check has passed)."""
    output.mkdir(parents=True, exist_ok=True)
    with atomic_file(output / "config.json") as path:
        path.write_text(json.dumps(config, indent=2))


def _batches(length: int, batch: int, epoch: int, seed: int, rank: int, world: int) -> List[List[int]]:
    """This process's share of each batch of one epoch (the same permutation on every process)."""
    order = torch.randperm(length, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
    usable = len(order) - len(order) % batch
    return [order[start:start + batch][rank::world] for start in range(0, usable, batch)]


def _save(output: Path, stage_model: StageModel, optimizer, scheduler, scaler, step: int) -> None:
    for name in MODEL_FILES:
        with atomic_file(output / MODEL_FILES[name]) as path:
            torch.save(getattr(stage_model, name).state_dict(), path)
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "torch_rng": torch.random.get_rng_state(), "stage": stage_model.stage}
    with atomic_file(output / STATE_FILE) as path:
        torch.save(state, path)


def train(config: Dict, output: str | os.PathLike, resume: bool = False) -> Dict[str, float]:
    """Run (or resume) one stage; returns the last logged numbers."""
    env = Distributed()
    try:
        return _train(config, Path(output), resume, env)
    finally:
        env.close()


def _train(config: Dict, output: Path, resume: bool, env: Distributed) -> Dict[str, float]:
    _check_output(output, resume)
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
    precision = AMP[config["amp"]]
    torch.manual_seed(config["seed"] + env.rank)
    step = 0
    if state is not None:
        step = state["step"]
        torch.random.set_rng_state(state["torch_rng"])
    if env.main:
        _start_output(output, config)
    env.barrier()
    network = stage_model
    if env.world_size > 1:
        network = DistributedDataParallel(stage_model, find_unused_parameters=True,
                                          device_ids=[env.device.index] if env.device.type == "cuda" else None)
    network.train()
    batches_per_epoch = len(dataset) // config["batch_size"]
    last: Dict[str, float] = {}
    log = open(output / LOG_FILE, "a") if env.main else None
    try:
        while step < config["steps"]:
            epoch, offset = divmod(step, batches_per_epoch)
            dataset.set_epoch(epoch)
            plan = _batches(len(dataset), config["batch_size"], epoch, config["seed"], env.rank, env.world_size)
            plan = plan[offset:offset + config["steps"] - step]
            loader = DataLoader(dataset, batch_sampler=plan, num_workers=config["num_workers"])
            bar = tqdm(loader, desc=f"{config['stage']} epoch {epoch}", unit="step", file=sys.stderr,
                       disable=not env.main, initial=offset, total=batches_per_epoch)
            for clips in bar:
                anchor = step % config["anchors"]
                started = time.time()
                with precision.autocast(env.device.type):
                    loss, terms = network(clips.to(env.device), anchor)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                if step % config["log_every"] == 0 or step == config["steps"]:
                    if not torch.isfinite(loss):
                        raise TrainingError(f"the loss is {loss.item()} at step {step}")
                    numbers = {"loss": env.mean(loss.item()), **{k: env.mean(v) for k, v in summarize(terms).items()}}
                    bar.set_postfix({k: round(v, 4) for k, v in numbers.items()})
                    last = {"step": step, "epoch": epoch, "anchor": anchor, "lr": scheduler.get_last_lr()[0],
                            "seconds": time.time() - started, **numbers}
                    if env.main:
                        log.write(json.dumps(last) + "\n")
                        log.flush()
                if step % config["save_every"] == 0 or step == config["steps"]:
                    if env.main:
                        _save(output, stage_model, optimizer, scheduler, scaler, step)
                    env.barrier()
            bar.close()
    finally:
        if log:
            log.close()
    return last
