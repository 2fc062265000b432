# agent: nothing yet
