"""Sonify's dev tools, beside the engine and not inside it: the emulator (emulator/, a local server speaking
the WaveSpeed and fal protocols, for tests, the demo and dry runs), the benchmark (bench/) and the demo
(demo.py, the emulator and MMAudio on a generated clip).

They import the engine as the top-level package `sonify` (`from sonify import media`), and each other
relatively. That is right for where they run: from the command line (`python -m sonify emulator | demo |
bench` from the pack folder; sonify/cli/dev.py imports them lazily, inside those commands), in the tests, or
in a subprocess — never inside a ComfyUI process, where the engine is the pack's subpackage and a node
run imports none of this package."""
