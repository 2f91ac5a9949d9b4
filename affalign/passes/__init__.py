"""The passes of a job: ideology (user labels), human (tweets → work table → scores) and models
(generate → score). Each builds its stage list from the typed config and runs it with the runtime."""
