"""Testing as §5.1 of the paper does it: several scales, mirrors, dense FC-as-conv, softmax-averaged ensembles.

``evaluate(cfg)`` scores checkpoints on a data set (top-k errors for any k, mean per-class accuracy,
per-class table, confusion matrix); ``predict(ckpts, images, topk)`` gives class names with
probabilities. Both average softmax outputs over views and over ensemble members.
``robustness_curves(ckpts, dataset)`` scores models on the data corrupted at graded severities (Figure 9). Names are imported
on first use, so that reading ``EvalConfig`` does not pull in torch.
"""

from minwa.utils.lazy import lazy_package

__all__ = lazy_package(__name__, {
    "EvalConfig": "minwa.evaluate.config",
    "DenseModel": "minwa.evaluate.dense",
    "to_dense": "minwa.evaluate.dense",
    "Member": "minwa.evaluate.ensemble",
    "load_members": "minwa.evaluate.ensemble",
    "member_from_model": "minwa.evaluate.ensemble",
    "evaluate": "minwa.evaluate.pipeline",
    "predict": "minwa.evaluate.pipeline",
    "EvalReport": "minwa.evaluate.report",
    "CORRUPTIONS": "minwa.evaluate.robustness",
    "Corrupted": "minwa.evaluate.robustness",
    "plot_robustness": "minwa.evaluate.robustness",
    "robustness_curves": "minwa.evaluate.robustness",
    "print_report": "minwa.evaluate.report",
    "write_outputs": "minwa.evaluate.report",
})
