// Nested Attention: the frontend side of Save Subject.
// After a run, the node shows the saved file's name, and every Load Subject combo lists the new file
// at once (the frontend's own refresh, as pressing R does), instead of after a manual refresh.
import { app } from "../../scripts/app.js";

const SAVE_SUBJECT = "NestedAttentionSaveSubject";
const SAVED_WIDGET = "saved_as";

app.registerExtension({
  name: "nested_attention.save_subject",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== SAVE_SUBJECT) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      const saved = output?.text?.[0];
      if (!saved) return;
      let widget = this.widgets?.find((w) => w.name === SAVED_WIDGET);
      if (!widget) {
        widget = this.addWidget("text", SAVED_WIDGET, "", () => {}, { serialize: false });
        widget.serialize = false; // not part of the workflow nor of the prompt
        widget.disabled = true;
      }
      widget.value = saved;
      this.setDirtyCanvas?.(true, true);
      app.refreshComboInNodes();
    };
  },
});
