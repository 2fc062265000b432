# spiffe: nothing yet
