# fuzz: nothing yet
