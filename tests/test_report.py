"""HTML reports: self-contained, honest about optimistic fills, and rendered by a real browser."""
import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xarray as xr

import pitgrid as pg
from pitgrid.results import ResultsDB, write_grid_report, write_report
from pitgrid.results.report import OPTIMISTIC_LABEL

CHROMIUM = Path("/usr/bin/chromium")
FIGURES = 5  # equity, drawdown, monthly returns, rolling Sharpe, exposure and turnover


@pytest.fixture(scope="module")
def market():
    return pg.synthetic_prices(300, 6, seed=0)


@pytest.fixture(scope="module", params=["next_open", "close"])
def result(request, market):
    c = market["close"]
    mean = c.rolling(time=20).mean()
    return pg.simulate(market, entries=c > mean, exits=c < mean, fill=request.param, fees_bps=5)


def external_references(page: str) -> list[str]:
    """Every src/href that would fetch something over the network."""
    tag = r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//"""
    return re.findall(tag, page, flags=re.IGNORECASE)


def test_report_is_self_contained_and_labels_optimistic_fills(tmp_path, market, result):
    path = write_report(result, tmp_path / "run.html", benchmark=market["close"].mean("symbol"))
    page = path.read_text(encoding="utf-8")
    assert external_references(page) == []
    assert page.count("* plotly.js v") == 1  # one inline copy of plotly.js
    assert page.count("Plotly.newPlot") == FIGURES
    assert (OPTIMISTIC_LABEL in page) == result.optimistic
    assert "benchmark (rescaled)" in page


def test_report_of_a_stored_run(tmp_path, result):
    with ResultsDB(tmp_path / "runs.db") as db:
        run = db.load_run(db.save_run(result, strategy="sma20", data_fingerprint="sha256:abc"))
    page = write_report(run, tmp_path / "run.html", title="SMA 20").read_text(encoding="utf-8")
    assert run.run_id in page and "sha256:abc" in page and "<title>SMA 20</title>" in page
    assert (OPTIMISTIC_LABEL in page) == result.optimistic


def test_report_arguments_are_checked(tmp_path, market):
    c = market["close"]
    w = xr.concat([c * 0 + 0.1, c * 0 + 0.2], dim="param")
    grid = pg.simulate(market, weights=w)
    with pytest.raises(ValueError, match="pass param="):
        write_report(grid, tmp_path / "r.html")
    with pytest.raises(ValueError, match="benchmark has shape"):
        write_report(grid, tmp_path / "r.html", param=1, benchmark=np.ones(3))
    page = write_report(grid, tmp_path / "r.html", param=1).read_text(encoding="utf-8")
    assert "1 of 2" in page


@pytest.fixture(scope="module")
def grid_table():
    fast, slow = np.meshgrid([5, 10, 20], [50, 100], indexing="ij")
    return pl.DataFrame({"fast": fast.ravel(), "slow": slow.ravel(), "lookback": 1,
                         "sharpe": [0.1, 0.5, float("nan"), 0.3, 0.9, -0.2]})


@pytest.mark.parametrize("names, trace", [(["fast", "slow"], '"type":"heatmap"'),
                                          (["fast"], '"type":"scatter"'),
                                          (["fast", "slow", "lookback"], None)])
def test_grid_report(tmp_path, grid_table, names, trace):
    table = grid_table if len(names) != 1 else grid_table.filter(pl.col("slow") == 50)
    path = write_grid_report(table, names, "sharpe", tmp_path / "g.html")
    page = path.read_text(encoding="utf-8")
    assert external_references(page) == []
    if trace is None:
        assert "Plotly.newPlot" not in page
    else:
        assert trace in page and page.count("* plotly.js v") == 1
    rows = re.findall(r"<tr><td>([^<]*)</td>.*?</tr>", page)
    assert rows[0] == "20" and len(rows) == table.height  # best sharpe (0.9) first


def test_grid_report_rejects_ambiguous_parameters(tmp_path, grid_table):
    with pytest.raises(ValueError, match="do not identify"):
        write_grid_report(grid_table, ["fast"], "sharpe", tmp_path / "g.html")
    with pytest.raises(ValueError, match="no column"):
        write_grid_report(grid_table, ["fast", "slow"], "calmar", tmp_path / "g.html")


# ---------------------------------------------------------------------- browser
def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB or RGBA PNG into (height, width, channels)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG layout"
        elif kind == b"IDAT":
            idat.append(body)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:  # None
            out[y] = line
        elif kind == 1:  # Sub: a running sum per channel
            out[y] = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint64).ravel() % 256
        elif kind == 2:  # Up
            out[y] = line + prev
        else:  # Average and Paeth depend on the decoded left neighbour: byte by byte
            cur, up = bytearray(line.tobytes()), prev.tobytes()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = up[i], (up[i - bpp] if i >= bpp else 0)
                if kind == 3:
                    pred = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                cur[i] = (cur[i] + pred) & 0xFF
            out[y] = np.frombuffer(bytes(cur), np.uint8)
        prev = out[y]
    return out.reshape(height, width, bpp)


def test_report_renders_in_headless_chromium(tmp_path, market):
    if not CHROMIUM.exists():
        if os.environ.get("PITGRID_NO_BROWSER") == "1":
            pytest.skip("PITGRID_NO_BROWSER=1 and no /usr/bin/chromium")
        pytest.fail("/usr/bin/chromium is missing: run .ci/install-browser (CI does), "
                    "or set PITGRID_NO_BROWSER=1 to skip the browser test")
    c = market["close"]
    mean = c.rolling(time=20).mean()
    res = pg.simulate(market, entries=c > mean, exits=c < mean, fill="close")
    report = write_report(res, tmp_path / "run.html", benchmark=c.mean("symbol"))
    png = tmp_path / "shot.png"
    proc = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
         "--window-size=1200,2400", "--enable-logging=stderr", "--v=0", "--dump-dom",
         report.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    js_errors = [line for line in proc.stderr.splitlines()
                 if "CONSOLE" in line and re.search(r"Uncaught|Error", line)]
    assert js_errors == []
    # plotly draws two <svg class="main-svg"> layers per figure once it has rendered
    assert proc.stdout.count('class="main-svg"') >= 2 * FIGURES
    assert OPTIMISTIC_LABEL in proc.stdout

    pixels = read_png(png)[..., :3]
    assert pixels.shape == (2400, 1200, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    not_white = (pixels < 245).any(axis=2).mean()
    assert len(colours) > 50, f"only {len(colours)} colours: a blank or broken page"
    assert not_white > 0.05, f"only {not_white:.1%} of the page is not white"
    red_banner = (pixels[..., 0] > 180) & (pixels[..., 1] < 70) & (pixels[..., 2] < 70)
    assert red_banner[:300].sum() > 5000, "the optimistic-fills banner is not visible at the top"
