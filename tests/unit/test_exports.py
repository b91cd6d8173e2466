import mongodb_session_manager


def test_public_names_are_sorted_and_importable() -> None:
    names = mongodb_session_manager.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(mongodb_session_manager, name) is not None


def test_the_guides_names_are_public() -> None:
    for name in (
        "create_mongodb_session_manager",
        "MongoDBSessionManager",
        "MongoDBSessionRepository",
        "MongoDBSessionManagerFactory",
        "initialize_global_factory",
        "get_global_factory",
        "close_global_factory",
    ):
        assert name in mongodb_session_manager.__all__
