"""The Stable-SAM dock widget: rectangles and clicks in napari's own layers -> masks in a Labels layer.

Flow: the model (any SPEC `stablesam segment --model` takes) loads in a worker thread; the image
embedding of the chosen layer's current plane is computed once, in a worker thread with napari's
progress indication; every change of the prompt layers then re-decodes the mask decoder only,
in the GUI thread (milliseconds to a few tens of them). The mask goes to "<image> Stable-SAM masks"
with the object's label; "Next object" keeps it and starts the next label. With a plugin and
"SAM's mask too", the same prompt through the same weights with the plugins off goes to
"<image> SAM masks". Bad input (an image SAM cannot take, a rectangle outside the image, a model
SPEC that cannot be built) is a napari notification.
"""

from typing import Any, Dict, Optional, Tuple

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                            QRadioButton, QVBoxLayout, QWidget)

from ..data.images import InputError
from ..models.spec import DEFAULT_SPEC
from .engine import NapariEngine, Result, image_key
from .images import layer_plane, plane_to_rgb, slice_index, spatial_shape
from .prompts import POSITIVE, read_prompt

BOXES, CLICKS = "Stable-SAM boxes", "Stable-SAM clicks"

FINISHED = {"added", "changed", "removed"}  # data events after a change (not the "-ing" ones before it)


def load_engine(spec: str) -> Any:
    """The engine of `spec`, or the one-line message of why it cannot be built (run in a worker)."""
    try:
        return NapariEngine.from_spec(spec)
    except InputError as e:
        return str(e)
    except Exception as e:  # a checkpoint that does not load, out of memory, ...: a notification
        return f"cannot load {spec!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


class StableSamWidget(QWidget):
    """Stable-SAM for the layers of `napari_viewer` (napari passes the viewer)."""

    def __init__(self, napari_viewer: Any, model: str = DEFAULT_SPEC):
        super().__init__()
        self.viewer = napari_viewer
        self.engine: Optional[NapariEngine] = None
        self.image: Optional[Image] = None
        self.key: Optional[str] = None  # embedding of the current plane, once computed
        self.wanted: Optional[Tuple[str, np.ndarray]] = None  # (key, rgb) of the plane to embed next
        self.index: Tuple[int, ...] = ()  # the plane's indices on the leading axes of a stack
        self.label = 1  # the current object's label
        self.active_box: Optional[int] = None  # the rectangle drawn or edited last
        self.results: Dict[str, Result] = {}  # "stable_sam" / "sam" -> the last decoded masks
        self.workers: Dict[str, Any] = {}  # "model" / "embed" -> a running worker
        self.boxes: Optional[Shapes] = None
        self.clicks: Optional[Points] = None
        self._muted = False

        self.model_edit = QLineEdit(model)
        self.model_edit.setToolTip("any --model SPEC of `stablesam segment`: tiny-stable-sam, "
                                   "vit_b:sam_vit_b.pth+plugin=plugin.pt, hq_vit_b:..., sam2.1_hiera_t:..., hf:DIR")
        self.load_button = QPushButton("Load")
        self.image_combo = QComboBox()
        self.positive_button = QRadioButton("object (+)")
        self.negative_button = QRadioButton("background (-)")
        self.positive_button.setChecked(True)
        self.compare_box = QCheckBox("SAM's mask too (a second Labels layer)")
        self.next_button = QPushButton("Next object")
        self.clear_button = QPushButton("Clear object")
        self.status = QLabel("")
        self.stats = QLabel("")
        for label in (self.status, self.stats):
            label.setWordWrap(True)
        self._layout()

        self.load_button.clicked.connect(self.load_model)
        self.model_edit.returnPressed.connect(self.load_model)
        self.image_combo.currentTextChanged.connect(self._image_chosen)
        self.positive_button.toggled.connect(self._click_kind)
        self.compare_box.toggled.connect(lambda _: self.segment())
        self.next_button.clicked.connect(self.next_object)
        self.clear_button.clicked.connect(self.clear_object)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.dims.events.current_step.connect(self._slice_changed)
        self._layers_changed()
        self.load_model()

    def _layout(self) -> None:
        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.model_edit)
        row.addWidget(self.load_button)
        form.addRow("model", row)
        form.addRow("image", self.image_combo)
        kinds = QHBoxLayout()
        kinds.addWidget(self.positive_button)
        kinds.addWidget(self.negative_button)
        form.addRow("clicks", kinds)
        buttons = QHBoxLayout()
        buttons.addWidget(self.next_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout()
        layout.addLayout(form)
        layout.addWidget(self.compare_box)
        layout.addLayout(buttons)
        layout.addWidget(self.stats)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setLayout(layout)

    # ---- state the tests and the benchmark read

    @property
    def busy(self) -> bool:
        """A model or an embedding is being computed."""
        return bool(self.workers)

    @property
    def ready(self) -> bool:
        """The model is loaded and the current plane's embedding is there."""
        return self.engine is not None and self.key is not None and not self.busy

    def masks_layer(self, sam: bool = False) -> Optional[Labels]:
        """The Labels layer of the chosen image (Stable-SAM's, or with `sam` plain SAM's)."""
        name = self._masks_name(sam)
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    # ---- the model and the embedding (worker threads)

    def load_model(self) -> None:
        spec = self.model_edit.text().strip()
        if "model" in self.workers or not spec:
            return
        self.engine, self.key = None, None
        self._say(f"loading {spec} ...")
        self._start("model", load_engine, (spec,), f"Stable-SAM: loading {spec}", self._model_loaded)

    def _model_loaded(self, engine: Any) -> None:
        if isinstance(engine, str):
            show_error(engine)
            self._say(engine)
            return
        self.engine = engine
        self.compare_box.setEnabled(engine.has_plugin)
        self._say(f"model {engine.name}" + ("" if engine.has_plugin else " (no plugin: plain SAM)"))
        self.request_embedding()

    def request_embedding(self) -> None:
        """Embed the chosen image's current plane (in a worker, unless kept), then decode."""
        self.key = None
        if self.engine is None or self.image is None:
            return
        try:
            self.index = slice_index(self.image, self.viewer)
            rgb = plane_to_rgb(layer_plane(self.image, self.index), self.image.rgb)
        except InputError as e:
            show_warning(f"{self.image.name}: {e}")
            self._say(f"{self.image.name}: {e}")
            return
        key = image_key(rgb)
        if self.engine.cached(key):
            self.key = key
            self.segment()
            return
        self.wanted = (key, rgb)
        if "embed" not in self.workers:
            self._embed_next()

    def _embed_next(self) -> None:
        key, rgb = self.wanted
        self._say(f"computing the image embedding of {self.image.name} ...")
        self._start("embed", self.engine.embed, (rgb, key), "Stable-SAM: image embedding", self._embedded)

    def _embedded(self, key: str) -> None:
        if self.wanted is not None and self.wanted[0] != key:  # the plane changed meanwhile
            self._embed_next()
            return
        self.wanted, self.key = None, key
        self._say(f"ready: draw a rectangle in '{BOXES}' or click in '{CLICKS}'")
        self.segment()

    def _start(self, role: str, function: Any, args: tuple, description: str, done: Any) -> None:
        worker = create_worker(function, *args, _progress={"total": 0, "desc": description})

        def finished() -> None:
            self.workers.pop(role, None)

        worker.returned.connect(lambda value: (finished(), done(value)))
        worker.errored.connect(lambda e: (finished(), show_error(f"Stable-SAM: {type(e).__name__}: {e}")))
        self.workers[role] = worker
        worker.start()

    # ---- layers

    def _layers_changed(self, event: Any = None) -> None:
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        current = self.image.name if self.image is not None and self.image in self.viewer.layers else None
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        self.image_combo.blockSignals(False)
        chosen = current or (names[-1] if names else None)
        if chosen is None:
            self.image = None
            return
        self.image_combo.setCurrentText(chosen)
        if chosen != current:
            self._image_chosen(chosen)

    def _image_chosen(self, name: str) -> None:
        if not name or name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        if layer is self.image:
            return
        self.image, self.label, self.results = layer, 1, {}
        self._prompt_layers()
        self._clear_prompts()
        masks = self.masks_layer()
        if masks is not None:
            self.label = int(masks.data.max()) + 1
        self.request_embedding()

    def _grid(self) -> Tuple[Tuple[int, ...], Dict[str, Any]]:
        """The chosen image's pixel-grid shape and the placement (scale, translate) of its layers."""
        shape = spatial_shape(self.image.data.shape, self.image.rgb)
        n = len(shape)
        return shape, dict(scale=tuple(self.image.scale)[-n:], translate=tuple(self.image.translate)[-n:])

    def _prompt_layers(self) -> None:
        """(Re)make the Shapes and Points layers of the prompts, on the chosen image's grid."""
        shape, placement = self._grid()
        if self.boxes is None or self.boxes not in self.viewer.layers or self.boxes.ndim != len(shape):
            if self.boxes is not None and self.boxes in self.viewer.layers:
                self.viewer.layers.remove(self.boxes)
            self.boxes = self.viewer.add_shapes(ndim=len(shape), name=BOXES, edge_color="yellow", face_color=[0, 0, 0, 0],
                                                edge_width=2, **placement)
            self.boxes.events.data.connect(self._boxes_changed)
        if self.clicks is None or self.clicks not in self.viewer.layers or self.clicks.ndim != len(shape):
            if self.clicks is not None and self.clicks in self.viewer.layers:
                self.viewer.layers.remove(self.clicks)
            self.clicks = self.viewer.add_points(
                np.zeros((0, len(shape))), ndim=len(shape), name=CLICKS, features={POSITIVE: np.zeros(0, bool)},
                face_color=POSITIVE, face_color_cycle={True: "lime", False: "red"}, size=10, **placement)
            self.clicks.events.data.connect(self._prompt_changed)
        self.boxes.scale, self.boxes.translate = placement["scale"], placement["translate"]
        self.clicks.scale, self.clicks.translate = placement["scale"], placement["translate"]
        self._click_kind()
        self.boxes.mode = "add_rectangle"
        self.viewer.layers.selection.active = self.boxes

    def _masks_name(self, sam: bool) -> Optional[str]:
        if self.image is None:
            return None
        return f"{self.image.name} {'SAM' if sam else 'Stable-SAM'} masks"

    def _masks(self, sam: bool) -> Labels:
        layer = self.masks_layer(sam)
        shape, placement = self._grid()
        if layer is None or layer.data.shape != shape:
            if layer is not None:
                self.viewer.layers.remove(layer)
            layer = self.viewer.add_labels(np.zeros(shape, np.int32), name=self._masks_name(sam), opacity=0.5,
                                           **placement)
            for prompt_layer in (self.boxes, self.clicks):  # prompts stay on top
                self.viewer.layers.move(self.viewer.layers.index(prompt_layer), len(self.viewer.layers))
            self.viewer.layers.selection.active = self.boxes
        return layer

    def _click_kind(self, *_: Any) -> None:
        if self.clicks is not None:
            self.clicks.feature_defaults[POSITIVE] = self.positive_button.isChecked()

    # ---- prompts -> masks

    def _boxes_changed(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.split(".")[-1].lower() not in FINISHED:
            return
        indices = getattr(event, "data_indices", None) or ()
        self.active_box = None if "removed" in action.lower() or not indices else int(indices[-1])
        if self.active_box is not None and self.active_box < 0:  # napari's "the one just drawn"
            self.active_box += len(self.boxes.data)
        self.segment()

    def _prompt_changed(self, event: Any = None) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.split(".")[-1].lower() in FINISHED:
            self.segment()

    def _slice_changed(self, event: Any = None) -> None:
        if self.image is not None and len(self._grid()[0]) > 2 and self.engine is not None:
            self.results = {}
            self.request_embedding()

    def segment(self) -> None:
        """Decode the current object's prompt into its label (a no-op until the embedding is there)."""
        if self._muted or self.engine is None or self.key is None or self.image is None:
            return
        size = spatial_shape(self.image.data.shape, self.image.rgb)[-2:]
        try:
            prompt = read_prompt(self.boxes, self.clicks, self.index, size, self.active_box)
            results = {} if prompt.empty else {"stable_sam": self.engine.decode(self.key, prompt, plugins=True)}
            if results and self.engine.has_plugin and self.compare_box.isChecked():
                results["sam"] = self.engine.decode(self.key, prompt, plugins=False)
        except InputError as e:
            show_warning(str(e))
            self._say(str(e))
            return
        self.results = results
        for sam in (False, True):
            result = results.get("sam" if sam else "stable_sam")
            if result is not None or self.masks_layer(sam) is not None:
                self._paint(self._masks(sam), None if result is None else result.mask)
        self._show_stats()

    def _paint(self, layer: Labels, mask: Optional[np.ndarray]) -> None:
        """The current object's label = `mask` on the current plane (earlier objects keep theirs)."""
        plane = layer.data[self.index] if self.index else layer.data
        plane[plane == self.label] = 0
        if mask is not None:
            plane[mask & (plane == 0)] = self.label
        layer.selected_label = self.label
        layer.refresh()

    def _show_stats(self) -> None:
        lines = [f"object {self.label}"]
        for key, title in (("stable_sam", "Stable-SAM" if self.engine.has_plugin else "SAM"), ("sam", "SAM")):
            r = self.results.get(key)
            if r is None:
                continue
            line = f"{title}: predicted IoU {r.iou:.3f}, stability {r.stability:.3f}"
            if r.alpha is not None:
                line += f", α {r.alpha[0]:.2f} deformed / {r.alpha[1]:.2f} regular"
            lines.append(line)
        self.stats.setText("\n".join(lines))

    # ---- objects

    def _clear_prompts(self) -> None:
        self._muted = True
        try:
            if self.boxes is not None and len(self.boxes.data):
                self.boxes.data = []
            if self.clicks is not None and len(self.clicks.data):
                self.clicks.data = np.zeros((0, self.clicks.ndim))
        finally:
            self._muted = False
        self.active_box = None

    def next_object(self) -> None:
        """Keep the current object's mask and start the next label with empty prompt layers."""
        masks = self.masks_layer()
        if masks is not None:
            self.label = max(self.label, int(masks.data.max())) + 1
        self._clear_prompts()
        self.results = {}
        self.stats.setText(f"object {self.label}")

    def clear_object(self) -> None:
        """Remove the current object's prompts and its mask."""
        self._clear_prompts()
        self.results = {}
        for sam in (False, True):
            layer = self.masks_layer(sam)
            if layer is not None:
                self._paint(layer, None)
        self.stats.setText(f"object {self.label}")

    def _say(self, text: str) -> None:
        self.status.setText(text)
