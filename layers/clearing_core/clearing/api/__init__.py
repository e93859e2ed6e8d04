"""The member API: who may read what (access), the read model it serves (views), the HTTP routes."""
