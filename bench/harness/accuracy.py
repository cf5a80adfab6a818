"""The accuracy harness: train with the paper's recipe, then top-1/top-5 error on the
validation split with the centre crop and with the ten-view average.

The learning-rate schedule actually taken is recorded per epoch (``curves.lr``), with the
epochs after which it was divided by 10 (``curves.lr_drops``).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.builders import augment_spec, build_model, pipeline_options
from bench.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from bench.config import RunConfig
from bench.data.source import open_dataset
from bench.errors import UserError
from bench.evaluate import evaluate
from bench import console
from bench.modes import Mode, running_mode
from bench.provenance import provenance
from bench.records import ended_by, new_run_id, write_record
from bench.reproducibility import guarantees
from bench.precision import set_precision, to_memory_format
from bench.train import History, make_optimizer, make_scheduler, seed_epoch, step_schedule, train_epoch
from pipelines import create_pipeline

PAPER_EPOCHS = 90


def epochs_for(config: RunConfig) -> int:
    return config.epochs or PAPER_EPOCHS


def run(config: RunConfig, mode: Mode | None = None) -> Path | None:
    """Train and evaluate as ``config`` says in ``mode`` (default: the config's); returns the record's path (None on ranks other than 0)."""
    if mode is None:
        with running_mode(config) as mode:
            return run(config, mode)
    main = mode.is_main
    progress = config.progress

    def say(message: str) -> None:
        console.say(config, message)

    if main:  # rank 0 checks the data (or finds it in the cache); the others then read the cache
        dataset = open_dataset(config)
    mode.barrier()
    if not main:
        dataset = open_dataset(config)
    counts = dataset.manifest.counts()
    def tell(message: str) -> None:
        console.notice(main, message)

    tell(f"data: {dataset.name} at {dataset.manifest.root}: {counts['train']['ok']} train, {counts['val']['ok']} val images, "
         f"{len(dataset.manifest.classes)} classes, {len(dataset.manifest.bad())} bad file(s) left out")
    for entry in dataset.manifest.bad()[:5]:
        tell(f"  left out {entry.path}: {entry.reason}")
    if len(dataset.manifest.bad()) > 5:
        tell(f"  ... and {len(dataset.manifest.bad()) - 5} more (all listed in the record)")
    for name in dataset.manifest.empty_classes("train"):
        tell(f"  warning: class {name} has no training images")
    spec = augment_spec(config, dataset)
    device = mode.input_device
    options = pipeline_options(config, device, rank=mode.rank, world_size=mode.world_size, batch_size=mode.per_process_batch(config.batch_size))
    global_batch = options.batch_size * mode.world_size
    if counts["train"]["ok"] < global_batch:
        raise UserError(f"--batch-size: the training split has {counts['train']['ok']} image(s), fewer than one batch of {global_batch}: "
                        "no training step could happen (give a smaller --batch-size)")
    pipeline = create_pipeline(config.pipeline, spec, options)
    train_split, val_split = dataset.manifest.split("train"), dataset.manifest.split("val")

    set_precision(config.precision)  # issue 13: fp32 (TF32 off) unless --precision says otherwise
    net = to_memory_format(mode.place(build_model(config, len(dataset.manifest.classes))), config.channels_last)
    optimizer = make_optimizer(net, config)
    scheduler = make_scheduler(optimizer, config)
    history = History()
    epochs = epochs_for(config)
    start_epoch = 0
    run_id = new_run_id(config.harness, config.pipeline, config.mode)
    if config.resume:
        state = load_checkpoint(config.resume)
        run_id = state["run_id"]
        mode.load_single_state_dict(net, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History.from_dict(state["history"])
        start_epoch = state["epoch"]
        say(f"resuming {run_id} after epoch {start_epoch}")
    ckpt = checkpoint_path(config.out, run_id)
    described = mode.describe()
    say(f"run {run_id}: {config.model} ({sum(p.numel() for p in net.parameters()):,} parameters), pipeline {config.pipeline}, "
        f"{config.mode} on {', '.join(described['devices'])} x{mode.world_size}, {epochs} epochs; checkpoint {ckpt}")

    started = time.time()
    status = "complete"
    final: dict = {}
    centre = None
    train_loader = val_loader = None
    try:
        train_loader = pipeline.train_loader(train_split)
        val_loader = pipeline.eval_loader(val_split)
        for epoch in range(start_epoch, epochs):
            seed_epoch(config.seed, epoch, mode.rank)
            train_loader.set_epoch(epoch)
            result = train_epoch(net, train_loader, optimizer, max_steps=config.steps_per_epoch, progress=progress, desc=f"epoch {epoch + 1}/{epochs}",
                                 precision=config.precision, channels_last=config.channels_last).summed(mode)
            val = centre = evaluate(net, val_loader, progress=progress, desc="validation").summed(mode)
            lr_before = optimizer.param_groups[0]["lr"]
            if step_schedule(scheduler, val.top1):
                history.lr_drops.append(epoch + 1)
            history.epoch.append(epoch + 1)
            history.train_loss.append(result.loss)
            history.train_top1_err.append(result.top1_err)
            history.val_top1_err.append(val.top1)
            history.val_top5_err.append(val.top5)
            history.lr.append(lr_before)
            history.images_per_s.append(result.images_per_s)
            history.epoch_seconds.append(result.seconds)
            if main:
                save_checkpoint(ckpt, {
                    "run_id": run_id,
                    "epoch": epoch + 1,
                    "model": mode.single_state_dict(net),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": history.to_dict(),
                    "config": config.to_dict(),
                })
            say(f"epoch {epoch + 1}/{epochs}: loss {result.loss:.4f}, train top-1 err {result.top1_err:.3f}, "
                f"val top-1 err {val.top1:.3f}, top-5 err {val.top5:.3f}, lr {lr_before:g}, {result.images_per_s:.1f} img/s")
        if centre is None:  # nothing left to train (a resumed, finished run): evaluate the weights as they are
            centre = evaluate(net, val_loader, progress=progress, desc="centre crop").summed(mode)
        final = {"top1_err_centre": centre.top1, "top5_err_centre": centre.top5, "val_samples": centre.samples}
        if config.ten_crop:
            ten = evaluate(net, pipeline.eval_loader(val_split, ten_crop=True), progress=progress, desc="ten views").summed(mode)
            final.update(top1_err_10crop=ten.top1, top5_err_10crop=ten.top5)
        say("final: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items()))
    except BaseException as err:
        status, _ = ended_by(err)  # this record has no error field (docs/records.md)
        if status == "interrupted":
            tell(f"interrupted: continue with python -m bench.run --resume {ckpt}" if ckpt.is_file()
                 else "interrupted before the first checkpoint: nothing to resume; run the same command again")
        raise
    finally:
        for loader in (train_loader, val_loader):
            if loader is not None:
                loader.close()
        path = None
        if main:
            path = write_record(config.out, {
                "run_id": run_id,
                "harness": config.harness,
                "status": status,
                "started": started,
                "finished": time.time(),
                "config": config.to_dict(),
                "epochs_planned": epochs,
                "dataset": dataset.describe(),
                "pipeline": pipeline.describe(),
                "reproducibility": guarantees(pipeline.describe(), described["devices"]),
                "mode": {**described, "batch_per_process": options.batch_size, "global_batch": options.batch_size * mode.world_size},
                "model": {"name": config.model, "parameters": sum(p.numel() for p in net.parameters())},
                "augmentation": spec.to_dict(),
                "curves": history.to_dict(),
                "metrics": final,
                "checkpoint": str(ckpt) if ckpt.is_file() else None,
                "provenance": provenance(config.seed, config),
            })
            tell(f"record: {path}")
    return path
