"""Video and audio files, with PyAV only: probing, the upload proxy, audio decode/fit, mux, and the windows of
a long clip. Frame rates are exact Fractions everywhere, so the sound fitted to N frames never drifts."""

from .audio import aac_rate, check_audio, decode_audio, decode_result, fit_length, resample, write_audio, write_wav
from .mux import check_lossless, copy_mux, copy_tagged, mux, mux_blocks, rewrap
from .pictures import frames_to_mp4, source_to_file
from .proxy import (
    _H264_PROXY,
    UploadPlan,
    _encode_proxy,
    constant_rate_for,
    frames_info,
    frames_to_proxy,
    make_upload,
    plan_upload,
    prepare_upload,
    unchanged_upload,
)
from .video import (
    MAX_SIDE,
    VideoInfo,
    VideoSource,
    check_frame_rate,
    check_picture,
    decode_frames,
    exact_fps,
    probe,
    tags,
    title,
    validate_source,
)
from .windows import frames_luma_histograms

__all__ = [
    "MAX_SIDE",
    "_H264_PROXY",
    "UploadPlan",
    "VideoInfo",
    "VideoSource",
    "_encode_proxy",
    "aac_rate",
    "check_audio",
    "check_frame_rate",
    "check_lossless",
    "check_picture",
    "constant_rate_for",
    "copy_mux",
    "copy_tagged",
    "decode_audio",
    "decode_frames",
    "decode_result",
    "exact_fps",
    "fit_length",
    "frames_info",
    "frames_luma_histograms",
    "frames_to_mp4",
    "frames_to_proxy",
    "make_upload",
    "mux",
    "mux_blocks",
    "plan_upload",
    "prepare_upload",
    "probe",
    "resample",
    "rewrap",
    "source_to_file",
    "tags",
    "title",
    "unchanged_upload",
    "validate_source",
    "write_audio",
    "write_wav",
]
