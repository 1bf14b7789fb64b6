// Sonify in ComfyUI's frontend: a "Sonify" section in the Settings dialog for the providers' keys and the emulator,
// a player for the sound a model node made, and, where the frontend draws no price badge of its own (ComfyUI 0.8),
// each model node's price as its widgets change. It talks only to the pack's routes (nodes/routes.py); a key typed
// here is sent once to the server's key file and kept nowhere in the browser.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { priceText } from "./price.js";
import { PROVIDERS, readEmulator, readKeys, removeKey, saveKey, setEmulator, statusText, testKey, testText } from "./keys.js";
import { SETTINGS, balanceText, readBalance, readSpend, saveSpend, settingNote, spendText } from "./spend.js";

const fetchApi = (path, options) => api.fetchApi(path, options);

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

// The key rows' look, from the frontend's own theme variables (frontend 1.35 and 1.49 both define them; 1.49 no
// longer styles PrimeVue's p-button classes): an input and its three buttons on one line, the status under them.
const STYLE = `
.sonify-key { display: grid; width: 30em; grid-template-columns: 1fr repeat(3, auto); gap: 0.4em; align-items: center; }
.sonify-key button { font: inherit; font-size: 0.9em; padding: 0.4em 0.9em; border-radius: 0.4em; cursor: pointer;
  color: var(--base-foreground, inherit); background: var(--secondary-background, #444);
  border: 1px solid var(--border-default, transparent); }
.sonify-key button:hover { background: var(--secondary-background-hover, #555); }
.sonify-key-status { grid-column: 1 / -1; font-size: 0.85em; opacity: 0.85; max-width: 32em; }
`;

function addStyle() {
  const style = document.createElement("style");
  style.textContent = STYLE;
  document.head.append(style);
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
    const show = (text) => { line.textContent = text; };
    const refresh = async () => {
      const [keys, emulator] = await Promise.all([readKeys(fetchApi), readEmulator(fetchApi)]);
      show(statusText(provider, keys[provider], emulator));
    };
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

// Spend: a dollar field per cap and the balance floor, with Save; today's and this month's spend, and the
// balances. The values live in Sonify's journal on the server (the setting's own value is never set).
function spendEditor() {
  const box = document.createElement("div");
  box.className = "sonify-spend";
  const line = document.createElement("div");
  line.style.cssText = "font-size: 0.85em; margin-top: 0.3em; opacity: 0.85; max-width: 36em";
  const fields = Object.fromEntries(Object.entries(SETTINGS).map(([name, label]) => {
    const input = document.createElement("input");
    input.type = "number";
    input.min = "0";
    input.step = "0.01";
    input.placeholder = "no limit";
    input.className = "p-inputtext p-component";
    input.style.width = "7em";
    input.setAttribute("aria-label", `${label} (US dollars)`);
    const row = document.createElement("label");
    row.style.cssText = "display: block; margin-bottom: 0.2em";
    const note = document.createElement("span");
    note.style.cssText = "font-size: 0.8em; opacity: 0.7; margin-left: 0.4em";
    row.append(`${label}: $ `, input, note);
    box.append(row);
    return [name, { input, note }];
  }));
  const show = (state) => {
    for (const [name, { input, note }] of Object.entries(fields)) {
      const setting = state.settings?.[name];
      input.value = setting?.usd ?? "";
      input.disabled = setting?.from === "environment";
      note.textContent = settingNote(setting);
    }
    line.textContent = spendText(state);
  };
  const act = (work) => async () => {
    try {
      await work();
    } catch (error) {
      line.textContent = `Error: ${error.message}`;
    }
  };
  const balances = document.createElement("div");
  balances.style.cssText = line.style.cssText;
  const values = () => Object.fromEntries(Object.entries(fields).filter(([, f]) => !f.input.disabled)
    .map(([name, f]) => [name, f.input.value]));
  const refresh = act(async () => {
    show(await readSpend(fetchApi));
    balances.textContent = "Asking for the balances…";
    balances.textContent = balanceText(await readBalance(fetchApi), PROVIDERS);
  });
  box.append(button("Save", act(async () => show(await saveSpend(fetchApi, values())))), button("Refresh", refresh),
    line, balances);
  refresh();
  return box;
}

const spendSetting = {
  id: "Sonify.Spend.caps",
  category: ["Sonify", "Spend", "Caps"],
  name: "Spend caps (US dollars) and what was spent",
  tooltip: "Refuses a job, before anything is uploaded, that would pass a cap (what Sonify's ledger shows spent today, " +
    "this month or by this run, plus the job's estimate) or take the WaveSpeed balance under the floor. Kept on the " +
    "ComfyUI server in Sonify's journal: the command line obeys them too. An environment variable wins.",
  type: spendEditor,
  defaultValue: "",
};

let catalog = {};

function widgetValues(node) {
  return Object.fromEntries((node.widgets || []).map((w) => [w.name, w.value]));
}

// The price, drawn above the title bar at its left, where ComfyUI 0.33 draws a node's price badge (and in its
// colours), clear of the title; recomputed on each draw (widget changes redraw).
function drawPrice(node, ctx) {
  const rule = catalog[node.comfyClass]?.rule;
  if (!rule || node.flags?.collapsed) return;
  const text = priceText(rule, widgetValues(node));
  const title = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const height = 18;
  ctx.save();
  ctx.font = "11px sans-serif";
  const width = ctx.measureText(text).width + 12;
  const y = -title - height - 4;
  ctx.fillStyle = "#8D6932";
  ctx.beginPath();
  ctx.roundRect ? ctx.roundRect(0, y, width, height, 5) : ctx.rect(0, y, width, height);
  ctx.fill();
  ctx.fillStyle = "#f4ecdf";
  ctx.textBaseline = "middle";
  ctx.fillText(text, 6, y + height / 2);
  ctx.restore();
}

app.registerExtension({
  name: "Sonify",
  settings: [...keySettings, emulatorSetting, spendSetting],
  async init() {
    addStyle();
    try {
      catalog = await (await fetchApi("/sonify/prices")).json();
    } catch (error) {
      console.warn("Sonify: no price catalog", error);
    }
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!(nodeData.name in catalog)) return;
    if (nodeData.output_name?.[0] === "audio") { // a video-to-audio node
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
    if (nodeData.price_badge) return; // the frontend draws the price itself (ComfyUI 0.33 and later)
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const r = draw?.apply(this, [ctx, ...rest]);
      drawPrice(this, ctx);
      return r;
    };
  },
});
