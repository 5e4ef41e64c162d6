"""`stablesam reproduce`: the paper's experiment (HQSeg-44K, four test sets, report), resumable."""
