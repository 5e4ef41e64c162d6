"""The one vocabulary of prompt kinds. Every part of the package that names a kind of prompt
(prompt generation, the RTS mixture of training, the benchmark's protocols and segmenters, the
ONNX check) takes its names and its subset from here.

A kind is what a prompt is made of and how it was drawn; a prompt *type* of the benchmark
adds its parameter (`noisy-box@0.4`, `points@3`, see `stablesam.prompts.generation`).
"""

from typing import Dict, Tuple

GT_BOX = "gt-box"  # the object's tight box
NOISY_BOX = "noisy-box"  # the tight box with each side moved by noise of a given scale
POINTS = "points"  # clicks inside the object (the ONNX check: random clicks anywhere)
BOX_POINTS = "box+points"  # a box and clicks together
INTERACTIVE = "interactive"  # SAM's simulated session: a first prompt, then corrective clicks
ADV_BOX = "adv-box"  # each model's own worst box within the noise's reach (searched)
BEST_BOX = "best-box"  # each model's own best box within that reach (searched)
ADV_POINT = "adv-point"  # each model's own worst single click inside the object (searched)
BOX = "box"  # any box (the ONNX check's random boxes)
MASK = "mask"  # a previous low-res mask as input (the ONNX check's mask_input path)

MEANING: Dict[str, str] = {
    GT_BOX: "the object's tight box",
    NOISY_BOX: "the tight box with each side moved by noise",
    POINTS: "clicks",
    BOX_POINTS: "a box and clicks",
    INTERACTIVE: "a first prompt, then corrective clicks",
    ADV_BOX: "the model's worst box within the noise's reach",
    BEST_BOX: "the model's best box within the noise's reach",
    ADV_POINT: "the model's worst click inside the object",
    BOX: "a box",
    MASK: "a low-res mask input",
}

SEARCHED: Tuple[str, ...] = (ADV_BOX, BEST_BOX, ADV_POINT)  # found per model by stablesam.prompts.adversarial
EVAL_KINDS: Tuple[str, ...] = (GT_BOX, NOISY_BOX, POINTS, *SEARCHED)  # the benchmark's prompt types
BOX_KINDS: Tuple[str, ...] = (GT_BOX, NOISY_BOX, ADV_BOX, BEST_BOX)  # those made of one box only
RTS_KINDS: Tuple[str, ...] = (GT_BOX, NOISY_BOX, POINTS, BOX_POINTS, INTERACTIVE, ADV_BOX)  # training's mixture
ONNX_KINDS: Tuple[str, ...] = (POINTS, BOX, BOX_POINTS, MASK)  # the ONNX check's random prompts
