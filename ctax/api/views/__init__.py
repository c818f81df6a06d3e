"""Views: how the API shapes domain objects into JSON answers. Built inside the route's `db.read()`/`db.write()`
block, where relationships can still load."""
