"""One interface for the benchmark's protocols, in the shape of detectron2's `DatasetEvaluator`:
`reset` before a run, `process` once per object, `evaluate` for the result. `run_evaluator`
feeds an evaluator every object of the datasets (the first `limit` of each)."""

from typing import Any, Optional, Sequence

from tqdm import tqdm


class Evaluator:
    """One protocol of `stablesam eval` (the prompt protocol, the click protocol)."""

    label: str = "eval"  # what the progress bar calls a run
    limit: Optional[int] = None  # first N objects of each dataset (None: all)

    def reset(self, datasets: Sequence) -> None:
        """Forget every earlier object; `datasets` are the ones `process` will see, in order."""
        raise NotImplementedError

    def process(self, dataset: Any, index: int, sample: Any) -> None:
        """Score one object (`sample`: image (H, W, 3) uint8, mask (H, W) bool, ignore (H, W) bool
        or None, name) with every model; `index` is its place in `dataset`."""
        raise NotImplementedError

    def evaluate(self) -> Any:
        """The result of the objects processed since `reset`."""
        raise NotImplementedError


def run_evaluator(datasets: Sequence, evaluator: Evaluator, progress: bool = True) -> Any:
    """reset, process every object (an unreadable one is skipped: the dataset reports it as a
    DataWarning), evaluate."""
    evaluator.reset(datasets)
    for ds in datasets:
        n = len(ds) if evaluator.limit is None else min(evaluator.limit, len(ds))
        for i in tqdm(range(n), desc=f"{evaluator.label} {ds.name}", unit="obj", disable=not progress):
            sample = ds.load(i)
            if sample is None:
                continue
            evaluator.process(ds, i, sample)
    return evaluator.evaluate()
