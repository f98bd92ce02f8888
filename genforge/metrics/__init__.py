"""Metrics: generated images (on features of a small per-data-set classifier) and text classifiers.

    genforge eval RUN                               # 10k generated vs the 10k real test images
    genforge eval --samples DIR|FILE.npz --ref PATH # images made by any tool, same protocol

`stats` holds the maths (Fréchet distance, KID, k-NN precision/recall, class entropy),
`feature_net` trains, freezes and caches the classifier whose features they use,
`protocol` runs the whole evaluation with the train-vs-test floor beside every number (for any
pipeline that generates labelled images), and `monitor_images` scores and grids samples while
an image family trains.
`classification` holds the text classifiers' metrics (accuracy, P/R/F1, ROC-AUC, calibration) and plots.
"""
