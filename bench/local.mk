# bench: nothing yet
