"""abqa: A/B benchmark of extractive question-answering models served by Triton.

The pipeline stages live in their own subpackages (`abqa.export`, `abqa.serve`, `abqa.client`,
`abqa.loadtest`, `abqa.analysis`); the pieces they share (data, metrics, records, config) live in
`abqa.core`. One CLI, `abqa <stage>`, is defined in `abqa.cli`.
"""

__version__ = "0.1.0"
