"""Loudness per ITU-R BS.1770-4: the meter against EBU Tech 3341's reference cases, the true-peak ceiling held on a
signal whose peaks fall between samples, silence left alone, the inputs checked; a sound kept in its file measured
block by block with a whole array's numbers; lossless sound in MOV/MKV read back exactly; the AAC bit rate a setting. Every signal is made here, and every expected value comes from the standard's
documents or from an independent computation (an FFT's band-limited interpolation), never from the meter."""

from __future__ import annotations

import math
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from clips import write_clip

from sonify import media
from sonify.errors import ConfigurationError, ValidationError
from sonify.loudness_target import AS_GENERATED, Target, target
from sonify.media import loudness, sound_check
from sonify.media.sound_file import SoundFile

RATE = 48000


def stereo_sine(segments: list[tuple[float, float]], frequency: float = 1000.0, rate: int = RATE) -> np.ndarray:
    """EBU Tech 3341's test signals: a sine in both channels, `segments` of (dBFS, seconds) one after another."""
    levels = np.concatenate([np.full(round(seconds * rate), 10 ** (dbfs / 20)) for dbfs, seconds in segments])
    wave = levels * np.sin(2 * np.pi * frequency * np.arange(levels.size) / rate)
    return np.stack([wave, wave]).astype(np.float32)


# EBU Tech 3341 (Loudness metering: "EBU mode" metering to supplement EBU R 128), table 1: stereo 1 kHz sines, the
# integrated loudness expected within ±0.1 LU. Cases 3-5 test the gates: the absolute one (-72 dBFS parts) and the
# relative one (-36 and -26 dBFS parts around louder ones).
TECH_3341 = {
    "1: -23 dBFS, 20 s": ([(-23, 20)], -23.0),
    "2: -33 dBFS, 20 s": ([(-33, 20)], -33.0),
    "3: -36, -23, -36 dBFS for 10, 60, 10 s": ([(-36, 10), (-23, 60), (-36, 10)], -23.0),
    "4: -72, -36, -23, -36, -72 dBFS": ([(-72, 10), (-36, 10), (-23, 60), (-36, 10), (-72, 10)], -23.0),
    "5: -26, -20, -26 dBFS for 20, 20.1, 20 s": ([(-26, 20), (-20, 20.1), (-26, 20)], -23.0),
}


@pytest.mark.parametrize("case", TECH_3341, ids=list(TECH_3341))
def test_the_ebu_tech_3341_reference_cases_within_a_tenth_of_an_lu(case):
    segments, expected = TECH_3341[case]
    assert loudness.integrated(stereo_sine(segments), RATE) == pytest.approx(expected, abs=0.1)


def band_limited_peak(channel: np.ndarray, factor: int = 16) -> float:
    """The true peak (dB) of a periodic signal: its samples interpolated `factor` times by zero-padding its
    spectrum (ideal band-limited interpolation), then the largest magnitude."""
    spectrum = np.fft.rfft(channel.astype(np.float64))
    fine = np.fft.irfft(spectrum, n=channel.size * factor) * factor
    return 20 * math.log10(float(np.max(np.abs(fine))))


def peaky(rate: int = RATE) -> np.ndarray:
    """10 s of a quiet bed (1 kHz at -40 dBFS) with one 10 ms burst at rate/4 whose samples fall 45° off its peaks:
    the samples reach 0.71 of its true peak of -6 dBFS — peaks between samples, 3 dB above the highest sample."""
    t = np.arange(10 * rate) / rate
    bed = 0.01 * np.sin(2 * np.pi * 1000 * t)
    burst = np.zeros_like(t)
    start, length = 5 * rate, rate // 100
    window = np.hanning(length + 1)[:length]
    burst[start:start + length] = 0.5 * window * np.sin(2 * np.pi * (rate / 4) * t[:length] + np.pi / 4)
    wave = bed + burst
    return np.stack([wave, wave]).astype(np.float32)


def test_the_true_peak_ceiling_holds_on_a_signal_with_intersample_peaks():
    sound = peaky()
    true_in = band_limited_peak(sound[0])
    sample_in = 20 * math.log10(float(np.max(np.abs(sound))))
    assert true_in - sample_in == pytest.approx(3.0, abs=0.1)  # the peaks are between the samples
    assert loudness.true_peak(sound, RATE) == pytest.approx(true_in, abs=0.05)

    out, applied = loudness.normalise(sound, RATE, Target(-14.0, -1.0))
    assert applied.held  # -14 LUFS would need about +17 dB; the peak allows about +5
    assert applied.gain_db == pytest.approx(-1.0 - true_in, abs=0.05)
    assert -1.05 <= band_limited_peak(out[0]) <= -1.0 + 0.01  # on the ceiling, not over it
    assert 20 * math.log10(float(np.max(np.abs(out)))) < -3.5  # a sample-peak normaliser would have gone 3 dB over
    assert np.allclose(out, sound * 10 ** (applied.gain_db / 20), rtol=1e-5, atol=1e-9)  # one gain, nothing else


@pytest.mark.parametrize("goal", [-14.0, -16.0, -23.0])
def test_a_target_is_reached_when_the_peaks_allow_it(goal):
    sound = stereo_sine([(-30, 10)])
    out, applied = loudness.normalise(sound, RATE, Target(goal))
    assert not applied.held and applied.gain_db == pytest.approx(goal + 30, abs=0.1)
    # EBU Tech 3341 case 1: a stereo 1 kHz sine of amplitude A reads 20·log10(A) LUFS
    amplitude = float(np.max(np.abs(out)))
    assert 20 * math.log10(amplitude) == pytest.approx(goal, abs=0.1)
    assert applied.lufs == pytest.approx(goal, abs=0.1)


def test_a_peak_in_the_last_samples_is_metered():
    sound = np.zeros((1, 2 * RATE + 1000), np.float32)  # the meter's last step is partial
    length = RATE * 3 // 100
    sound[0, -length:] = 0.5 * np.hanning(length) * np.sin(2 * np.pi * 1000 * np.arange(length) / RATE)
    assert loudness.true_peak(sound, RATE) == pytest.approx(20 * math.log10(float(np.abs(sound).max())), abs=0.1)


def test_silence_has_no_loudness_and_is_left_as_it_is():
    silence = np.zeros((2, RATE), np.float32)
    assert loudness.measure(silence, RATE) == loudness.Level(None, None)
    out, applied = loudness.normalise(silence, RATE, Target(-14.0))
    assert out is silence and applied.gain_db == 0.0
    too_short = np.full((1, RATE // 20), 0.5, np.float32)  # 50 ms: no 400 ms block to gate
    assert loudness.integrated(too_short, RATE) is None


def test_a_sound_in_its_file_is_measured_block_by_block_with_a_whole_arrays_numbers():
    """A long clip's joined sound stays in its file: its loudness, true peak, silent share and clipped samples are
    read block by block (blocks that do not line up with the meter's steps or the short-term windows), and come out
    as the whole array's — which the standard's case and independent computations pin down."""
    sound = stereo_sine(TECH_3341["4: -72, -36, -23, -36, -72 dBFS"][0])  # 100 s, 20 s of it below -60 dBFS
    burst = 5 * RATE
    sound[:, burst:burst + 5] = 1.0  # 5 samples at full scale, in a quiet part: below both gates
    kept = SoundFile.written((sound[:, i:i + 100_000] for i in range(0, sound.shape[1], 100_000)), sound.shape[1],
                             RATE)

    tracemalloc.start()
    level = loudness.measure_file(kept)
    checked = sound_check.check_file(kept, 100.0, 100.0, level)
    held = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert held < sound.nbytes / 8  # a few blocks at a time, never the sound (38 MB)
    assert level == loudness.measure(sound, RATE)
    assert level.lufs == pytest.approx(-23.0, abs=0.1)  # EBU Tech 3341 case 4
    assert level.true_peak_dbtp == pytest.approx(band_limited_peak(sound[0, burst - 2400:burst + 2400]), abs=0.05)

    assert checked == sound_check.check(sound, RATE, 100.0, 100.0, level)
    assert checked.clipped_samples == np.count_nonzero(np.abs(sound) >= 0.999) == 10 and checked.flags == ()
    hop, half = RATE // 10, round(1.5 * RATE)  # short-term: 3 s around every 100 ms step
    power = np.mean(sound.astype(np.float64) ** 2, axis=0)
    steps = [power[max(0, c - half):c + half].mean() < 1e-6 for c in range(hop // 2, sound.shape[1], hop)]
    assert checked.silent_share == pytest.approx(np.mean(steps), abs=1e-9)
    assert checked.silent_share == pytest.approx(0.14, abs=0.01)  # the -72 dBFS parts, less the burst's windows
    odd = (sound[:, i:i + 7_777] for i in range(0, sound.shape[1], 7_777))
    assert sound_check.silent_share(odd, sound.shape[1], RATE, -60.0) == checked.silent_share

    louder, applied = loudness.normalise_file(kept, Target(-16.0), level)
    whole, applied_whole = loudness.normalise(sound, RATE, Target(-16.0), level)
    assert applied == applied_whole and np.array_equal(louder.load(), whole)  # the same gain, sample for sample
    assert loudness.normalise_file(kept, Target(-16.0), loudness.Level(None, None))[0] is kept  # silence: left


def test_the_loudness_inputs_are_checked_by_name():
    assert target(AS_GENERATED) is None
    assert target("-23 LUFS") == Target(-23.0, -1.0)
    assert target("custom", -18.5, -2.0) == Target(-18.5, -2.0)
    with pytest.raises(ValidationError, match=r"loudness: must be one of as generated, -14 LUFS, -16 LUFS, -23 LUFS, "
                                              r"custom, got '-14'"):
        target("-14")
    with pytest.raises(ValidationError, match=r"loudness_lufs: must be from -40 to -5 LUFS, got -3"):
        target("custom", -3)
    with pytest.raises(ValidationError, match=r"true_peak_dbtp: must be from -9 to 0 dBTP, got 1.5"):
        target("-14 LUFS", ceiling_dbtp=1.5)


def decoded(path: Path) -> tuple[str, np.ndarray]:
    """The first sound stream's codec and its samples [C, T] in the stream's own format (no conversion)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        channels = stream.codec_context.channels
        name = stream.codec_context.name
    samples = np.concatenate(frames, axis=-1)
    if samples.shape[0] == 1 and channels > 1:  # packed: one row of interleaved samples
        samples = samples.reshape(-1, channels).T
    return name, samples


@pytest.mark.parametrize(("suffix", "codec"), [(".mov", "pcm_f32le"), (".mkv", "pcm_f32le"), (".mkv", "flac")])
def test_pcm_and_flac_in_mov_and_mkv_read_back_exactly(tmp_path, suffix, codec):
    clip = write_clip(tmp_path / "clip.mp4", 24, Fraction(24), 64, 48)
    sound = np.random.default_rng(7).uniform(-1, 1, (2, 44100)).astype(np.float32)
    out = media.mux(clip, sound, 44100, tmp_path / f"out{suffix}", codec=codec)
    name, samples = decoded(Path(out))
    assert name == codec
    if codec == "flac":  # 24-bit: each sample rounded to the nearest of 2^24 steps, in the top of an int32
        expected = np.rint(sound.astype(np.float64) * 2**23).astype(np.int32) << 8
        assert samples.dtype == np.int32 and np.array_equal(samples, expected)
    else:
        assert samples.dtype == np.float32 and np.array_equal(samples, sound)


def test_flac_in_a_mov_is_refused_by_name(tmp_path):
    with pytest.raises(ValidationError, match=r"audio codec: flac goes in a \.mkv file, not \.mov"):
        media.mux(tmp_path / "any.mp4", np.zeros((1, 10), np.float32), 44100, tmp_path / "out.mov", codec="flac")


def test_the_aac_bit_rate_is_a_setting(tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "clip.mp4", 48, Fraction(24), 64, 48)
    sound = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 2 * 48000)).astype(np.float32)

    def kbps(name: str) -> float:
        out = media.mux(clip, sound, 48000, tmp_path / name)
        with av.open(out) as container:
            stream = container.streams.audio[0]
            return stream.codec_context.bit_rate / 1000

    assert kbps("default.mp4") == pytest.approx(192, rel=0.1)  # 96 a channel
    monkeypatch.setenv("SONIFY_AAC_KBPS", "64")
    assert kbps("less.mp4") == pytest.approx(128, rel=0.1)
    monkeypatch.setenv("SONIFY_AAC_KBPS", "1000")
    with pytest.raises(ConfigurationError, match=r"SONIFY_AAC_KBPS must be a whole number from 32 to 256 kbit/s a channel"):
        kbps("refused.mp4")
