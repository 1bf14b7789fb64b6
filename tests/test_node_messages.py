"""What a ComfyUI user reads on a node and in ComfyUI's error: what to do said in ComfyUI's terms (Settings › Sonify,
the emulator switch, a Fetch Result node with the task id), never a shell command, in lines that fit the node's box
without cutting a word."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest
from pack import load_pack, module, outputs
from test_node_async import defaults, file_video, host_interrupt, journal, model_node, until, waiting

from sonify.catalog import MMAUDIO_V2

PARAMS = {"prompt": "rain", "negative_prompt": "", "duration": 0, "num_inference_steps": 25, "guidance_scale": 4.5,
          "mask_away_clip": False, "seed": -1}


@pytest.fixture
def node_texts(monkeypatch) -> list[str]:
    """What the nodes show on themselves: the texts sent through a stand-in of ComfyUI's PromptServer (its
    send_progress_text(text, node id), server.py)."""
    sent: list[str] = []
    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(
        send_progress_text=lambda text, node_id: sent.append(text)))
    monkeypatch.setitem(sys.modules, "server", server)
    return sent


def run_mmaudio(video) -> tuple:
    node_cls = load_pack().NODE_CLASS_MAPPINGS["SonifyMMAudioV2"]
    return outputs(getattr(node_cls(), node_cls.FUNCTION))(video=video, unique_id="7", **PARAMS)


def assert_fits_a_node(text: str) -> None:
    lines = text.split("\n")
    assert all(len(line) <= module("nodes.messages").LINE for line in lines), text
    assert "python -m" not in text and "sonify fetch" not in text


def test_no_key_points_to_the_settings_and_the_emulator_switch(state, clip_path, node_texts, monkeypatch):
    monkeypatch.delenv("SONIFY_EMULATOR", raising=False)
    errors = module("sonify.errors")
    with pytest.raises(errors.ConfigurationError) as caught:
        asyncio.run(run_mmaudio(module("nodes.comfy").FileVideo(str(clip_path))))
    message = str(caught.value)
    assert message == ("No WaveSpeed API key (nothing was sent): add one in Settings › Sonify › API keys, or switch "
                       "on \"Use the local emulator\" there.")
    assert "environment variable" not in message and "python" not in message
    assert node_texts[-1] == module("nodes.messages").node_text(message)
    assert_fits_a_node(node_texts[-1])
    assert len(node_texts[-1].split("\n")) <= 3  # the box a node shows it in opens three lines high


def test_a_failed_job_names_its_task_and_the_fetch_result_node(emulator, wavespeed_env, clip_path, node_texts):
    emulator.fail_next(MMAUDIO_V2.model_id, error="the model crashed")
    errors = module("sonify.errors")
    with pytest.raises(errors.JobFailed) as caught:
        asyncio.run(run_mmaudio(module("nodes.comfy").FileVideo(str(clip_path))))
    (task_id,) = [t.id for t in emulator.tasks.all()]
    message = str(caught.value)
    assert "the model crashed" in message
    assert message.endswith("a Fetch Result node (Sonify › utility) with provider wavespeed gets its result, at no "
                            f"cost — task_id {task_id}")
    assert "python -m" not in message
    assert_fits_a_node(node_texts[-1])
    assert f"task_id {task_id}" in node_texts[-1].split("\n")  # on a line of its own, whole


def test_after_cancel_the_node_says_what_happened_and_how_to_get_the_result(emulator, wavespeed_env, clip_path,
                                                                           node_texts, monkeypatch):
    emulator.model_seconds = 30
    mm = host_interrupt()
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    rows = journal(wavespeed_env)

    async def press_cancel_while_waiting() -> str:
        cls, run = model_node("mmaudio-v2")
        task = asyncio.create_task(run(**defaults(cls, prompt="rain", video=file_video(clip_path), unique_id="7")))
        await until(lambda: bool(waiting(emulator, rows)))
        (task_id,) = waiting(emulator, rows)
        mm.interrupt_current_processing()
        with pytest.raises(mm.InterruptProcessingException):
            await task
        return task_id

    task_id = asyncio.run(press_cancel_while_waiting())
    said = node_texts[-1]
    assert_fits_a_node(said)
    assert said.startswith("Cancelled\n") and "wavespeed accepted the cancel of task" in said.replace("\n", " ")
    assert "Fetch Result node" in said and f"task_id {task_id}" in said.split("\n")


def test_the_words_of_the_command_line_become_comfyuis():
    messages = module("nodes.messages")
    hint = module("sonify.providers.base").recovery_hint("fal", "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab")
    said = messages.for_comfyui(f"fal task 0f1e… was still processing after 600 s; {hint}")
    assert said == ("fal task 0f1e… was still processing after 600 s; later, a Fetch Result node (Sonify › utility) "
                    "with provider fal gets its result, at no cost — task_id 0f1e2d3c-aaaa-bbbb-cccc-1234567890ab")
    listed = messages.for_comfyui("Get the result of the right one with `python -m sonify fetch fal abc --model "
                                  "thinksound-fal`; `python -m sonify fetch fal def --model thinksound-fal` — the next")
    assert "python" not in listed and "and model thinksound-fal gets its result, at no cost — task_id abc;" in listed
    assert "`python -m sonify jobs`" not in messages.for_comfyui(
        "task_id: is empty: copy it from the job info, an error message or `python -m sonify jobs`")
