"""Explaining datasets: length buckets, one chunk program, in memory or streamed to resumable shards."""

from lrpjax.datasets.memory import (Chunk, DatasetExplanation, assign_buckets, bucket_edges, clear_cache, compilations,
                                    eps_sweep, explain_dataset, iter_chunks)
from lrpjax.datasets.shards import StreamError, StreamResults, StreamRow, open_results
from lrpjax.datasets.stream import FLUSH, Batcher, StreamSummary, explain_stream, iter_stream

__all__ = ["FLUSH", "Batcher", "Chunk", "DatasetExplanation", "StreamError", "StreamResults", "StreamRow",
           "StreamSummary", "assign_buckets", "bucket_edges", "clear_cache", "compilations", "eps_sweep",
           "explain_dataset", "explain_stream", "iter_chunks", "iter_stream", "open_results"]
