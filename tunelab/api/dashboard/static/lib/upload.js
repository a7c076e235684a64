// Drag-and-drop upload with a progress bar per file.
import { html, useRef, useState } from "./html.js";
import { upload } from "./api.js";
import { t } from "./i18n.js";
import { ErrorBox, Progress } from "./ui.js";

export function DropZone({ purpose, onUploaded, accept, testid = "dropzone" }) {
  const [over, setOver] = useState(false);
  const [uploads, setUploads] = useState([]);
  const input = useRef(null);
  const update = (name, patch) =>
    setUploads((list) => list.map((u) => (u.name === name ? { ...u, ...patch } : u)));
  function send(files) {
    for (const file of files) {
      setUploads((list) => [...list.filter((u) => u.name !== file.name), { name: file.name, progress: 0 }]);
      upload(file, purpose, (progress) => update(file.name, { progress })).then(
        (created) => {
          update(file.name, { progress: 1, id: created.id });
          onUploaded?.(created);
        },
        (error) => update(file.name, { error }),
      );
    }
  }
  return html`<div
    class=${`dropzone ${over ? "over" : ""}`}
    data-testid=${testid}
    onDragOver=${(e) => {
      e.preventDefault();
      setOver(true);
    }}
    onDragLeave=${() => setOver(false)}
    onDrop=${(e) => {
      e.preventDefault();
      setOver(false);
      send([...e.dataTransfer.files]);
    }}
    onClick=${() => input.current.click()}
  >
    <input
      type="file"
      multiple
      hidden
      ref=${input}
      accept=${accept}
      data-testid=${`${testid}-input`}
      onChange=${(e) => {
        send([...e.target.files]);
        e.target.value = "";
      }}
    />
    <p>${t("upload.drop", { purpose })}</p>
    ${uploads.map(
      (u) => html`<div class="upload" data-testid="upload" data-done=${u.id ? "true" : "false"} onClick=${(e) => e.stopPropagation()}>
        <span>${u.name}</span>
        ${u.error
          ? html`<${ErrorBox} error=${u.error} />`
          : html`<${Progress} value=${u.progress} label=${u.id || `${Math.round(u.progress * 100)}%`} />`}
      </div>`,
    )}
  </div>`;
}
