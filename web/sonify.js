// Sonify in ComfyUI's frontend: a "Sonify" section in the Settings dialog for the providers' keys, each model
// node's price estimate drawn on the node as its widgets change, and a player for the sound it made. It talks only to the pack's routes
// (nodes/routes.py); a key typed here is sent once to the server's key file and kept nowhere in the browser.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { estimateFor } from "./price.js";
import { PROVIDERS, readKeys, removeKey, saveKey, setEmulator, statusText, testKey, testText } from "./keys.js";

const fetchApi = (path, options) => api.fetchApi(path, options);

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = "p-button p-component p-button-sm p-button-secondary";
  b.style.marginLeft = "0.4em";
  b.addEventListener("click", onClick);
  return b;
}

// A custom setting type: a password field with Save, Remove and Test. The setting's own value is never set
// (ComfyUI would store it in comfy.settings.json): the key goes to POST /sonify/keys only.
function keyEditor(provider) {
  return () => {
    const box = document.createElement("div");
    box.className = "sonify-key";
    const input = document.createElement("input");
    input.type = "password";
    input.autocomplete = "off";
    input.spellcheck = false;
    input.placeholder = provider === "fal" ? "key_id:key_secret" : "API key";
    input.className = "p-inputtext p-component";
    input.setAttribute("aria-label", `${PROVIDERS[provider]} API key`);
    const line = document.createElement("div");
    line.className = "sonify-key-status";
    line.style.cssText = "font-size: 0.85em; margin-top: 0.3em; opacity: 0.85; max-width: 32em";
    const show = (text) => { line.textContent = text; };
    const refresh = async () => show(statusText(provider, (await readKeys(fetchApi))[provider]));
    const act = (work) => async () => {
      try {
        await work();
      } catch (error) {
        show(`Error: ${error.message}`);
      }
    };
    box.append(
      input,
      button("Save", act(async () => {
        const key = input.value;
        input.value = "";
        show(statusText(provider, (await saveKey(fetchApi, provider, key))[provider]));
      })),
      button("Remove", act(async () => show(statusText(provider, (await removeKey(fetchApi, provider))[provider])))),
      button("Test", act(async () => { show("Checking…"); show(testText(await testKey(fetchApi, provider))); })),
      line,
    );
    act(refresh)();
    return box;
  };
}

const keySettings = Object.entries(PROVIDERS).map(([provider, title]) => ({
  id: `Sonify.Keys.${provider}`,
  category: ["Sonify", "API keys", title],
  name: `${title} API key`,
  tooltip: `Saved in Sonify's key file (mode 600) on the ComfyUI server, never in the browser or a workflow. ` +
    `An environment variable, if set, wins.`,
  type: keyEditor(provider),
  defaultValue: "",
}));

// "Try it without a key": the pack's bundled emulator on this machine in place of both providers. The page's
// first call (oldValue undefined) only switches it on: a browser left with the setting off does not stop an
// emulator another one (or SONIFY_EMULATOR=1) started.
const emulatorSetting = {
  id: "Sonify.Emulator.enabled",
  category: ["Sonify", "Try it without a key", "Emulator"],
  name: "Use the local emulator (free, synthetic sound)",
  tooltip: "Runs Sonify's bundled emulator on 127.0.0.1 in place of WaveSpeed and fal: every node works without a " +
    "key and costs nothing, and its sound is synthetic (it follows the picture's motion), labelled as the " +
    "emulator's. Your real keys are never sent to it.",
  type: "boolean",
  defaultValue: false,
  async onChange(on, old) {
    if (old === undefined && !on) return;
    try {
      const state = await setEmulator(fetchApi, on);
      if (!on && state.on) console.info("Sonify: SONIFY_EMULATOR=1 keeps the emulator on");
    } catch (error) {
      console.warn("Sonify: emulator mode", error);
    }
  },
};

let catalog = {};

function widgetValues(node) {
  return Object.fromEntries((node.widgets || []).map((w) => [w.name, w.value]));
}

// The estimate, drawn at the right of the title bar, recomputed on each draw (widget changes redraw).
function drawPrice(node, ctx) {
  const entry = catalog[node.comfyClass];
  if (!entry?.rule || node.flags?.collapsed) return;
  const { text } = estimateFor(entry, widgetValues(node), node.sonifyClipSeconds ?? null);
  node.sonifyPriceText = text;
  const height = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  ctx.font = "11px sans-serif";
  const width = ctx.measureText(text).width + 10;
  const x = node.size[0] - width - 6;
  const y = -height + 6;
  ctx.fillStyle = "rgba(20, 90, 50, 0.9)";
  ctx.beginPath();
  ctx.roundRect ? ctx.roundRect(x, y, width, height - 12, 4) : ctx.rect(x, y, width, height - 12);
  ctx.fill();
  ctx.fillStyle = "#e8ffe8";
  ctx.textBaseline = "middle";
  ctx.fillText(text, x + 5, y + (height - 12) / 2);
  ctx.restore();
}

app.registerExtension({
  name: "Sonify",
  settings: [...keySettings, emulatorSetting],
  async init() {
    try {
      catalog = await (await fetchApi("/sonify/prices")).json();
    } catch (error) {
      console.warn("Sonify: no price catalog", error);
    }
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!(nodeData.name in catalog)) return;
    if (nodeData.category === "Sonify/video to audio") {
      // ComfyUI's own audio player (the Comfy.AudioWidget extension's AUDIO_UI widget, not saved in workflows),
      // pointed after a run at the file the node's "ui" audio entry names.
      nodeData.input.optional = { ...(nodeData.input.optional || {}), audioUI: ["AUDIO_UI", {}] };
      const executed = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        executed?.apply(this, arguments);
        const file = output?.audio?.[0];
        const player = this.widgets?.find((w) => w.name === "audioUI")?.element;
        if (!file || !player) return;
        const query = new URLSearchParams({ filename: file.filename, subfolder: file.subfolder, type: file.type });
        player.src = api.apiURL(`/view?${query}`);
        player.classList.remove("empty-audio-widget");
      };
    }
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const r = draw?.apply(this, [ctx, ...rest]);
      drawPrice(this, ctx);
      return r;
    };
  },
});
