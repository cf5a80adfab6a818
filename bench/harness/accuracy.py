"""The accuracy harness: train with the paper's recipe, then top-1/top-5 error on the
validation split with the centre crop and with the ten-view average."""

from __future__ import annotations

import time
from pathlib import Path

from bench.builders import augment_spec, build_model, pipeline_options
from bench.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from bench.config import RunConfig
from bench.data.source import open_dataset
from bench.evaluate import evaluate
from bench.harness.execution import describe_mode, place_model
from bench.provenance import provenance
from bench.records import new_run_id, write_record
from bench.train import History, make_optimizer, make_scheduler, resolve_device, seed_epoch, train_epoch
from pipelines import create_pipeline

PAPER_EPOCHS = 90


def epochs_for(config: RunConfig) -> int:
    return config.epochs or PAPER_EPOCHS


def say(config: RunConfig, message: str) -> None:
    if config.progress:
        print(message, flush=True)


def run(config: RunConfig) -> Path:
    """Train and evaluate as ``config`` says; returns the path of the record written."""
    device = resolve_device(config.device)
    dataset = open_dataset(config)
    counts = dataset.manifest.counts()
    say(config, f"data: {dataset.name} at {dataset.manifest.root}: {counts['train']['ok']} train, {counts['val']['ok']} val images, "
                f"{len(dataset.manifest.classes)} classes, {len(dataset.manifest.bad())} bad file(s) left out")
    spec = augment_spec(config, dataset)
    pipeline = create_pipeline(config.pipeline, spec, pipeline_options(config, device))
    train_split, val_split = dataset.manifest.split("train"), dataset.manifest.split("val")

    net = place_model(build_model(config, len(dataset.manifest.classes)), config.mode, device)
    optimizer = make_optimizer(net, config)
    scheduler = make_scheduler(optimizer, config)
    history = History()
    epochs = epochs_for(config)
    start_epoch = 0
    run_id = new_run_id(config.harness, config.pipeline, config.mode)
    if config.resume:
        state = load_checkpoint(config.resume)
        run_id = state["run_id"]
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History.from_dict(state["history"])
        start_epoch = state["epoch"]
        say(config, f"resuming {run_id} after epoch {start_epoch}")
    ckpt = checkpoint_path(config.out, run_id)
    say(config, f"run {run_id}: {config.model} ({sum(p.numel() for p in net.parameters()):,} parameters), "
                f"pipeline {config.pipeline}, {config.mode} on {device}, {epochs} epochs; checkpoint {ckpt}")

    train_loader = pipeline.train_loader(train_split)
    val_loader = pipeline.eval_loader(val_split)
    started = time.time()
    status = "complete"
    final: dict = {}
    centre = None
    try:
        for epoch in range(start_epoch, epochs):
            seed_epoch(config.seed, epoch)
            train_loader.set_epoch(epoch)
            result = train_epoch(net, train_loader, optimizer, max_steps=config.steps_per_epoch, progress=config.progress, desc=f"epoch {epoch + 1}/{epochs}")
            val = centre = evaluate(net, val_loader, progress=config.progress, desc="validation")
            lr_before = optimizer.param_groups[0]["lr"]
            scheduler.step(val.top1)
            if optimizer.param_groups[0]["lr"] < lr_before:
                history.lr_drops.append(epoch + 1)
            history.epoch.append(epoch + 1)
            history.train_loss.append(result.loss)
            history.train_top1_err.append(result.top1_err)
            history.val_top1_err.append(val.top1)
            history.val_top5_err.append(val.top5)
            history.lr.append(lr_before)
            history.images_per_s.append(result.images_per_s)
            history.epoch_seconds.append(result.seconds)
            save_checkpoint(ckpt, {
                "run_id": run_id,
                "epoch": epoch + 1,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": history.to_dict(),
                "config": config.to_dict(),
            })
            say(config, f"epoch {epoch + 1}/{epochs}: loss {result.loss:.4f}, train top-1 err {result.top1_err:.3f}, "
                        f"val top-1 err {val.top1:.3f}, top-5 err {val.top5:.3f}, lr {lr_before:g}, {result.images_per_s:.1f} img/s")
        if centre is None:  # nothing left to train (a resumed, finished run): evaluate the weights as they are
            centre = evaluate(net, val_loader, progress=config.progress, desc="centre crop")
        final = {"top1_err_centre": centre.top1, "top5_err_centre": centre.top5, "val_samples": centre.samples}
        if config.ten_crop:
            ten = evaluate(net, pipeline.eval_loader(val_split, ten_crop=True), progress=config.progress, desc="ten views")
            final.update(top1_err_10crop=ten.top1, top5_err_10crop=ten.top5)
        say(config, "final: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in final.items()))
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException:
        status = "failed"
        raise
    finally:
        train_loader.close()
        val_loader.close()
        record = {
            "run_id": run_id,
            "harness": config.harness,
            "status": status,
            "started": started,
            "finished": time.time(),
            "config": config.to_dict(),
            "epochs_planned": epochs,
            "dataset": dataset.describe(),
            "pipeline": pipeline.describe(),
            "mode": describe_mode(config.mode, device),
            "model": {"name": config.model, "parameters": sum(p.numel() for p in net.parameters())},
            "augmentation": spec.to_dict(),
            "curves": history.to_dict(),
            "metrics": final,
            "checkpoint": str(ckpt),
            "provenance": provenance(config.seed),
        }
        path = write_record(config.out, record)
        say(config, f"record: {path}")
    return path
