from coderunner_sql import DeploymentStatus, PlanType


def test_create_and_read_user(db):
    user = db.create_user(email="Ada@Example.com", password_hash="h", plan_type=PlanType.TEAM)
    assert db.get_user_by_email("ada@example.com") == user
    assert db.get_user_by_id(str(user.id)) == user


def test_transaction_rolls_back(db):
    def body(tx):
        tx.create_user(email="gone@example.com", password_hash="h")
        raise RuntimeError("boom")

    try:
        db.execute_in_transaction(body)
    except RuntimeError:
        pass
    assert db.get_user_by_email("gone@example.com") is None


def test_status_listing(db):
    user = db.create_user(email="x@example.com", password_hash="h")
    project = db.create_project(user_id=user.id, name="app")
    db.create_deployments([{"project_id": project.id, "runtime_type": "python"}] * 3)
    page = db.get_deployments_by_status(DeploymentStatus.PENDING, limit=2)
    assert page.total == 3 and len(page.items) == 2
