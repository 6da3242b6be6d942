"""Internal apart from `featurekit.read` and `featurekit.dataloader`. Reading for training:
the loader (`dataloader`: exactly-once, shuffled, resumable; `epoch`, `batches`, `prefetch`),
`read` (columns as Arrow, numpy or torch), the runs of `featurekit train`/`eval` (`runs`) and
the VQA accuracy (`vqa`)."""
