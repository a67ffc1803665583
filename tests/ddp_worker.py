"""Started by torchrun from tests/test_train.py: train, then report what this rank ended with."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from resemote_lib.distributed import shutdown
from resemote_lib.params import load_params
from resemote_lib.train import fit
from resemote_lib.usage import parse_overrides

if __name__ == "__main__":
    params, report_dir, *overrides = sys.argv[1:]
    result = fit(load_params(params, **parse_overrides(overrides)), progress=False)
    digest = hashlib.sha256()
    for p in result.model.parameters():
        digest.update(p.detach().cpu().numpy().tobytes())
    rank = int(os.environ["RANK"])
    report = {"rank": rank, "params_sha256": digest.hexdigest(), "lr": result.history["lr"].tolist(),
              "val_acc": result.history["val_acc"].tolist(), "train_loss": result.history["train_loss"].tolist(),
              "epochs_run": result.epochs_run, "stopped_early": result.stopped_early, "best_epoch": result.best_epoch}
    Path(report_dir, f"rank{rank}.json").write_text(json.dumps(report))
    shutdown()
