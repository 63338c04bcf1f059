"""Train nnU-Net v2 (its plan, trainer, augmentation, loss and optimiser) for a wall-clock budget.

Used by bench/vs_nnunet.py; run in its own process with nnUNet_raw / nnUNet_preprocessed /
nnUNet_results set::

    python bench/nnunet_budget_train.py DATASET_ID MINUTES [--iterations-per-epoch 25]

What differs from ``nnUNetv2_train DATASET_ID 3d_fullres all -device cpu``, and why: nnU-Net's
schedule assumes 1000 epochs of 250 iterations (days on a CPU). Here the same poly learning rate
(initial 0.01, exponent 0.9) decays over the *time* budget instead of 1000 epochs, epochs are
shortened (25 iterations, 5 validation iterations) so the rate is updated often, and training
stops when the budget is spent. The checkpoint is then saved under nnU-Net's own trainer name
(``nnUNetTrainer``, the same network and inference), so ``nnUNetv2_predict`` and medseg load it
as any nnU-Net model folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset_id")
    ap.add_argument("minutes", type=float)
    ap.add_argument("--iterations-per-epoch", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_results
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    budget = args.minutes * 60

    class nnUNetTrainerBudget(nnUNetTrainer):
        def on_train_start(self):
            super().on_train_start()
            self.t_start = time.perf_counter()

        def on_train_epoch_start(self):
            super().on_train_epoch_start()
            frac = min(1.0, (time.perf_counter() - self.t_start) / budget)
            for g in self.optimizer.param_groups:
                g["lr"] = self.initial_lr * (1 - frac) ** 0.9

        def spent(self) -> bool:
            return time.perf_counter() - self.t_start >= budget

        def run_training(self):  # nnU-Net's loop, stopping (mid-epoch too) when the budget is spent
            self.on_train_start()
            for _ in range(self.current_epoch, self.num_epochs):
                self.on_epoch_start()
                self.on_train_epoch_start()
                outs = []
                for _ in range(self.num_iterations_per_epoch):
                    outs.append(self.train_step(next(self.dataloader_train)))
                    self.iterations = getattr(self, "iterations", 0) + 1
                    if self.spent():
                        break
                self.on_train_epoch_end(outs)
                with torch.no_grad():
                    self.on_validation_epoch_start()
                    outs = [self.validation_step(next(self.dataloader_val))
                            for _ in range(self.num_val_iterations_per_epoch)]
                    self.on_validation_epoch_end(outs)
                self.on_epoch_end()
                if self.spent():
                    break
            self.on_train_end()

    name = maybe_convert_to_dataset_name(args.dataset_id)
    pre = Path(nnUNet_preprocessed) / name
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((pre / "dataset.json").read_text())
    plans["continue_training"] = False  # what nnUNetv2_train's get_trainer_from_args adds
    trainer = nnUNetTrainerBudget(plans, "3d_fullres", "all", dataset_json, device=torch.device("cpu"))
    trainer.num_iterations_per_epoch = args.iterations_per_epoch
    trainer.num_val_iterations_per_epoch = 5
    t0 = time.perf_counter()
    trainer.run_training()
    took = time.perf_counter() - t0
    src = Path(trainer.output_folder_base)
    dst = src.parent / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.move(src, dst)
    ck_path = dst / "fold_all" / "checkpoint_final.pth"
    ck = torch.load(ck_path, weights_only=False, map_location="cpu")
    ck["trainer_name"] = "nnUNetTrainer"
    torch.save(ck, ck_path)
    (dst / "fold_all" / "checkpoint_best.pth").unlink(missing_ok=True)
    print(f"nnU-Net trained {trainer.iterations} iterations (batch {trainer.batch_size}, {trainer.current_epoch} epochs of "
          f"<= {args.iterations_per_epoch}) in {took / 60:.1f} min "
          f"-> {dst} (nnUNet_results {nnUNet_results})", flush=True)


if __name__ == "__main__":
    main()
