"""One router per resource: models, completions, chat, images, classify, metrics (+ health), playground."""
