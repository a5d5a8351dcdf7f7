// Nested Attention: the frontend side of Save Subject and Apply Nested Attention.
// Save Subject: after a run the node shows the saved file's name ("saved as ...", or "already saved as
// ..." when ComfyUI reused the last run because that file is still there), and every Load Subject
// combo lists the new file at once (the frontend's own refresh, as pressing R does).
// Apply Nested Attention: its numbers are not clamped by the widget; the server checks them when the
// prompt is queued and reports a wrong one on the node (ApplyNestedAttention.validate_inputs).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAVE_SUBJECT = "NestedAttentionSaveSubject";
const APPLY = "ApplyNestedAttention";
const SAVED_WIDGET = "saved_as";
const UNCLAMPED = ["weight", "start_at", "end_at"];

let cachedNodes = new Set(); // ids of the nodes ComfyUI reused in the current run
api.addEventListener("execution_cached", ({ detail }) => {
  cachedNodes = new Set((detail?.nodes ?? []).map(String));
});

// The saved name as an element the page shows (a disabled text widget is drawn without its value).
function savedWidget(node) {
  const found = node.widgets?.find((w) => w.name === SAVED_WIDGET);
  if (found) return found;
  const element = document.createElement("div");
  element.className = "nested-attention-saved-as";
  element.style.cssText =
    "font: 12px sans-serif; color: var(--input-text, #ddd); padding: 2px 8px; overflow-wrap: anywhere;";
  const widget = node.addDOMWidget(SAVED_WIDGET, "nested_attention_saved_as", element, {
    serialize: false, // not part of the workflow nor of the prompt
    getValue: () => element.textContent,
    setValue: (value) => {
      element.textContent = value;
    },
    getMinHeight: () => 22,
  });
  widget.serialize = false;
  return widget;
}

app.registerExtension({
  name: "nested_attention.nodes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === APPLY) {
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        onNodeCreated?.apply(this, arguments);
        for (const widget of this.widgets ?? []) {
          if (!UNCLAMPED.includes(widget.name) || !widget.options) continue;
          widget.options.min = -Number.MAX_VALUE; // finite: JSON sends an infinite number as null
          widget.options.max = Number.MAX_VALUE;
        }
      };
    }
    if (nodeData.name !== SAVE_SUBJECT) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      const saved = output?.text?.[0];
      if (!saved) return;
      const reused = cachedNodes.has(String(this.id));
      savedWidget(this).value = `${reused ? "already saved as" : "saved as"} ${saved}`;
      const size = this.computeSize();
      this.setSize([Math.max(this.size[0], size[0]), Math.max(this.size[1], size[1])]);
      this.setDirtyCanvas?.(true, true);
      app.refreshComboInNodes();
    };
  },
});
