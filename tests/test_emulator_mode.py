"""Emulator mode (ComfyUI's "try it without a key"), switched on through the pack's route as the Settings
dialog does: the bundled emulator starts on 127.0.0.1 as a child process, a node run goes to it with its own
key (the real one, set in the environment, is never used), and the result says it is the emulator's — in the
progress text, the job info and the file's metadata. Switched off, the pack points at the real providers."""

from __future__ import annotations

import json
import logging

import av
from pack import load_pack, module
from test_routes import answer, serve

REAL_KEY = "ws-real-SECRET-0123456789abcdef"
PARAMS = {"prompt": "rain on a tin roof", "negative_prompt": "", "duration": 0, "num_inference_steps": 25,
          "guidance_scale": 4.5, "mask_away_clip": False, "seed": -1}


def test_the_setting_starts_the_emulator_and_results_say_so(state, monkeypatch, clip_path, caplog):
    caplog.set_level(logging.DEBUG, logger="sonify")
    monkeypatch.setenv("WAVESPEED_API_KEY", REAL_KEY)
    monkeypatch.delenv("SONIFY_EMULATOR", raising=False)
    config = module("sonify.config")
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    video = module("nodes.comfy").FileVideo(str(clip_path))
    results = {}

    async def test(client) -> None:
        assert await answer(await client.get("/sonify/emulator")) == {"on": False, "from_environment": False}
        try:
            assert await answer(await client.post("/sonify/emulator", json={"on": True})) == {
                "on": True, "from_environment": False}
            assert config.base_url("wavespeed").startswith("http://127.0.0.1:")
            assert config.api_key("wavespeed") != REAL_KEY
            outputs = getattr(node_cls(), node_cls.FUNCTION)(video=video, **PARAMS)
            results["job"], results["file"] = json.loads(outputs[-1]), outputs[1].get_stream_source()
            keys = await answer(await client.get("/sonify/keys"))  # the dialog still shows the real key
            assert keys["wavespeed"] == {"set": True, "source": "environment", "hint": "…cdef"}
        finally:
            off = await answer(await client.post("/sonify/emulator", json={"on": False}))
        assert off == {"on": False, "from_environment": False}
        assert config.base_url("wavespeed") == "https://api.wavespeed.ai" and config.api_key("wavespeed") == REAL_KEY

    serve(test)
    job = results["job"]
    assert job["status"] == "completed" and job["emulator"] is True
    with av.open(results["file"]) as container:
        assert container.metadata.get("title") == config.EMULATOR_TITLE
    progress = [r.getMessage() for r in caplog.records if "done in" in r.getMessage()]
    assert progress and all(m.startswith("emulator (synthetic sound) · ") for m in progress)
    assert all(REAL_KEY not in r.getMessage() for r in caplog.records)
