"""Independent Python side of the TensorBoard tests: reads a folder of event files with the
`tensorboard` package and writes what it sees as JSON into a file (stdout is not ours: the
accumulator prints its purges there).

  tensorboard_read.py FOLDER OUT.json

  records: per events file (sorted by name, the order TensorBoard reads them), the number of
           records its TFRecord reader accepts; a record failing its length or data CRC, or a
           torn one, fails the script (exit 1) naming the file.
  scalars: what the event accumulator serves per tag, [step, value] in its order, after its
           purge of orphaned steps (a SessionLog START drops what came at or after its step).

Values are float32 widened to double, so json keeps them exactly.
"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New


def count_records(path):
    reader = PyRecordReader_New(path)
    n = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return n
        except errors.DataLossError as e:
            raise SystemExit(f"{path}: record {n}: {e}")
        n += 1


def main():
    folder = sys.argv[1]
    names = sorted(n for n in os.listdir(folder) if "tfevents" in n)
    records = [{"name": n, "records": count_records(os.path.join(folder, n))} for n in names]
    acc = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    scalars = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    with open(sys.argv[2], "w") as out:
        json.dump({"records": records, "scalars": scalars}, out)


if __name__ == "__main__":
    main()
