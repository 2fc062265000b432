# keycloak: nothing yet
