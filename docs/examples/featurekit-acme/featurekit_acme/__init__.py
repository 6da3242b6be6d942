"""featurekit-acme: an example plugin with two text extractors."""
import featurekit
import pyarrow as pa


class VowelCount(featurekit.Extractor):
    name = "acme.vowels"            # what specs write after `extractor:`
    version = "1"                   # bump when outputs change: the column becomes stale
    inputs = {"text": pa.string()}  # logical input -> expected Arrow type

    class Params(featurekit.Extractor.Params):   # pydantic; unknown keys are errors
        letters: str = "aeiou"

    def output_type(self) -> pa.DataType:
        return pa.int32()

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        # batch columns are named by the logical inputs; return one value per row
        return pa.array([sum(c in self.params.letters for c in (t or ""))
                         for t in batch.column("text").to_pylist()], pa.int32())


class Number(featurekit.Extractor):
    name = "acme.number"
    version = "1"
    inputs = {"text": "string"}     # a type class: any string type

    def output_type(self) -> pa.DataType:
        return pa.int64()

    def __call__(self, batch: pa.RecordBatch) -> featurekit.RowErrors:
        # "12" -> 12; a row that is not a number fails alone and is retried next apply
        return featurekit.RowErrors.map(int, batch.column("text").to_pylist(), pa.int64())


@featurekit.hookimpl
def featurekit_register_extractors():
    return [VowelCount, Number]
