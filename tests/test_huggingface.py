"""NNVizTrainerCallback with W&B (offline): the page lands in the Trainer's run; an
IterableDataset needs an example (without one: a warning, and training goes on). (The
README's example, run by tests/test_readme_examples.py, covers MLflow, whose run the
Trainer ends first, and the example batch.)"""

from __future__ import annotations

import json
import warnings

import torch

from helpers import need

transformers = need("transformers")
from nnviz_report.huggingface import NNVizTrainerCallback  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 100, (12,), generator=g), "labels": i % 2}


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=2
    )
    return transformers.BertForSequenceClassification(config)


def train(tmp_path, callback, report_to, dataset=None):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        logging_steps=1,
        use_cpu=True,
        report_to=report_to,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=tiny_bert(), args=args, train_dataset=dataset or Tokens(), callbacks=[callback]
    )
    trainer.train()
    return trainer


def test_logged_to_the_wandb_run_of_the_metrics(offline_trackers, tmp_path):
    wandb = need("wandb")
    callback = NNVizTrainerCallback(title="bert", graph=False)
    train(tmp_path, callback, ["wandb"])
    page = callback.saved.read_bytes()
    assert callback.saved == tmp_path / "out" / "nnviz-report.html"
    assert json.loads((tmp_path / "out" / "nnviz-report.json").read_bytes())["title"] == "bert"
    wandb.finish()
    [run_dir] = (tmp_path / "wandb").glob("offline-run-*")  # the one W&B run: the Trainer's
    [media] = run_dir.glob("files/media/html/nnviz-report_*.html")
    assert media.read_bytes() == page


def test_iterable_dataset_needs_an_example_and_training_goes_on(tmp_path):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return (Tokens()[i] for i in range(16))

    alone = NNVizTrainerCallback()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tmp_path / "1", alone, "none", dataset=Stream())  # trains, without a report
    assert alone.saved is None
    assert [str(w.message) for w in caught if "nnviz-report" in str(w.message)] == [
        "nnviz-report: no report will be made at the end of this training run: NNVizError: the training set is "
        "not a sized, indexable dataset (an IterableDataset?), so it gives no example input; pass "
        "NNVizTrainerCallback(example_input=...)"
    ]
    # With an example input given, the same run reports; a broken one is a warning only.
    callback = NNVizTrainerCallback(example_input={"input_ids": torch.randint(0, 100, (2, 12))}, graph=False)
    train(tmp_path, callback, "none", dataset=Stream())
    assert callback.saved.is_file()
    broken = NNVizTrainerCallback(example_input={"input_ids": torch.full((2, 12), 10_000)}, graph=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tmp_path / "2", broken, "none", dataset=Stream())
    assert broken.saved is None
    assert any("nnviz-report: the report was not built" in str(w.message) for w in caught)
