# docs: nothing yet
