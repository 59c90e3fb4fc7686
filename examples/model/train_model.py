"""Train a small MLP on an ingested store and save it as a bundle that model_run.toml backtests.

    pitgrid ingest ../../../shared/data/prices.csv.gz --store prices.pitgrid \
        --membership ../../../shared/data/sp500_membership_intervals.csv
    python train_model.py prices.pitgrid mlp_bundle --train-end 2012-12-31
    pitgrid run model_run.toml           # trades from 2013-01-02 on: after the training data

The features come from pitgrid.models.training_frame, which builds them exactly as
ModelStrategy will at each bar (prices split-adjusted as of that bar). Labels are
5-bar forward returns in terciles (sell / hold / buy); only rows whose label is known
by --train-end are used, and the normalisation is fitted on those rows alone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import pitgrid as pg
from pitgrid.models import save_bundle, training_frame

FEATURES = [
    {"name": "ret_1", "kernel": "simple_returns", "params": {}, "field": "close"},
    {"name": "mom_5", "kernel": "momentum", "params": {"window": 5}, "field": "close"},
    {"name": "mom_20", "kernel": "momentum", "params": {"window": 20}, "field": "close"},
    {"name": "rsi_14", "kernel": "rsi", "params": {"window": 14}, "field": "close"},
    {"name": "z_close_20", "kernel": "rolling_zscore", "params": {"window": 20}, "field": "close"},
    {"name": "z_volume_20", "kernel": "rolling_zscore", "params": {"window": 20}, "field": "volume"},
]
CLASSES = ["sell", "hold", "buy"]


def train(market: pg.MarketData, bundle_dir: str | Path, *, train_end: str, horizon: int = 5,
          hidden: int = 16, epochs: int = 30, max_rows: int = 200_000, seed: int = 0,
          threshold: float = 0.4) -> Path:
    """Fit the MLP on rows known by ``train_end`` and save the bundle; returns its directory."""
    import torch

    from pitgrid.models.architectures import build_model

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # a shared machine: one core for training
    frame = training_frame(market, FEATURES, horizon=horizon)
    norm = frame.normalization(end=train_end)
    rows = frame.samples(end=train_end, normalization=norm)
    if len(rows.forward_return) == 0:
        raise SystemExit(f"no training rows before {train_end}: is the store's history that long?")
    pick = np.random.default_rng(seed).permutation(len(rows.forward_return))[:max_rows]
    x, y = rows.x[pick], rows.forward_return[pick]
    labels = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))  # 0 sell, 1 hold, 2 buy
    net = build_model("mlp", {"hidden": [hidden]}, n_features=len(FEATURES), lookback=1,
                      n_classes=len(CLASSES))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    for _ in range(epochs):
        for batch in torch.randperm(len(yt)).split(4096):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[batch]), yt[batch]).backward()
            optimiser.step()
    return save_bundle(net, bundle_dir, architecture="mlp", settings={"hidden": [hidden]},
                       features=FEATURES, lookback=1, classes=CLASSES,
                       decision={"threshold": threshold, "min_bars_between": horizon},
                       normalization=norm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="an ingested store (pitgrid ingest ... --store PATH)")
    parser.add_argument("bundle", help="the bundle directory to write")
    parser.add_argument("--train-end", required=True, help="last date whose labels may be used")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    path = train(pg.open_market(args.store), args.bundle, train_end=args.train_end,
                 epochs=args.epochs)
    print(f"saved {path} (model.pt sha256 {pg.ModelBundle.load(path).weights_sha256[:12]}...)")


if __name__ == "__main__":
    main()
