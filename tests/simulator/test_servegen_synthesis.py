"""ServeGen synthesis: seeded, per-window counts follow the published rate, burstiness the CV, and
token pairs come from the given empirical distribution."""

import io
import tarfile

import numpy as np
import pytest

from simulator.servegen_synthesis import synthesize


def archive(tmp_path, rows):
    path = tmp_path / "servegen.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for client, text in rows.items():
            data = text.encode()
            info = tarfile.TarInfo(f"data/language/m-test/chunk-{client}-trace.csv")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_counts_follow_rates_and_the_seed(tmp_path):
    path = archive(
        tmp_path,
        {
            "0": "0,2.0,1.0,Gamma,1,1\n600,0,0,,0,0\n1200,1.0,3.0,Weibull,0.4,0.5\n",
            "1": "0,1.0,2.0,Weibull,0.5,1\n600,0.5,1.0,Gamma,1,1\n1200,0,0,,0,0\n",
        },
    )
    inputs, outputs = np.array([100, 2000]), np.array([10, 50])
    arrivals, tokens_in, tokens_out = synthesize(path, "m-test", inputs, outputs, scale=2.0, seed=1)
    again = synthesize(path, "m-test", inputs, outputs, scale=2.0, seed=1)
    np.testing.assert_array_equal(arrivals, again[0])
    assert np.all(np.diff(arrivals) >= 0)
    per_window = np.bincount((arrivals // 600).astype(int), minlength=3)
    expected = np.array([3.0, 0.5, 1.0]) * 600 * 2.0
    assert per_window == pytest.approx(expected, rel=0.25)
    pairs = set(zip(tokens_in.tolist(), tokens_out.tolist(), strict=True))
    assert pairs <= {(100, 10), (2000, 50)}


def test_a_high_cv_window_is_burstier(tmp_path):
    path = archive(tmp_path, {"0": "0,5.0,1.0,Gamma,1,1\n600,5.0,4.0,Gamma,1,1\n"})
    arrivals, _, _ = synthesize(path, "m-test", np.array([1]), np.array([1]), scale=1.0, seed=2)
    smooth = np.diff(arrivals[arrivals < 600])
    bursty = np.diff(arrivals[arrivals >= 600])
    assert np.std(smooth) / np.mean(smooth) == pytest.approx(1.0, rel=0.2)
    assert np.std(bursty) / np.mean(bursty) > 2.5


@pytest.mark.parametrize("family", ["Gamma", "Weibull"])
def test_the_synthesized_rate_per_window_is_the_published_one(tmp_path, family):
    # Bursty clients at a small scale, where a process opened at an ordinary gap over-counted by
    # (CV^2 - 1) / 2 = 7.5 arrivals per client and window against 1.5 expected: 400 clients of
    # 0.5 req/s and CV 4 over 8 windows, scale 0.005.
    cv, rate, scale, windows = 4.0, 0.5, 0.005, 8
    rows = "".join(f"{600 * w},{rate},{cv},{family},1,1\n" for w in range(windows))
    path = archive(tmp_path, {str(client): rows for client in range(400)})
    arrivals, _, _ = synthesize(path, "m-test", np.array([1]), np.array([1]), scale=scale, seed=4)
    per_window = np.bincount((arrivals // 600).astype(int), minlength=windows)
    published = 400 * rate * 600 * scale  # 600 requests per window
    # Tolerance: a renewal count's standard deviation is about sqrt(N) x CV (98 here); every
    # window within 3.5 of them, the whole run (4,800 requests) within 5 %.
    spread = np.sqrt(published) * cv
    assert np.all(np.abs(per_window - published) < 3.5 * spread), per_window
    assert per_window.sum() == pytest.approx(published * windows, rel=0.05)
