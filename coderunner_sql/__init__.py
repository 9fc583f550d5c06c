"""coderunner-sql: CodeRunner's PostgreSQL data layer.

Named SQL files in `queries/` become typed methods of `DatabaseService` (sync) and
`AsyncDatabaseService` (async); `migrations/` holds the yoyo schema migrations.
"""

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.converter import converter, to_dict
from coderunner_sql.errors import (
    AlreadyExistsError,
    ConfigError,
    ConflictError,
    DatabaseError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    EmbeddedServerError,
    EncryptionError,
    MigrationError,
    MigrationIntegrityError,
    MigrationLockError,
    NotFoundError,
    PermissionDeniedError,
    PoolExhaustedError,
    QueryError,
    SchemaNotReadyError,
    ValidationError,
)
from coderunner_sql.params import UNSET
from coderunner_sql.records import (
    Deployment,
    DeploymentDetails,
    DeploymentStatus,
    HealthDetails,
    HealthReport,
    NewDeployment,
    Page,
    PlanType,
    PoolInfo,
    Project,
    ProjectWithUser,
    ReplicaHealth,
    SystemStats,
    User,
)
from coderunner_sql.service import DatabaseService, ScopedService, Transaction
from coderunner_sql.service_async import (
    AsyncDatabaseService,
    AsyncScopedService,
    AsyncTransaction,
)

__all__ = [
    "UNSET",
    "AlreadyExistsError",
    "AsyncDatabaseService",
    "AsyncScopedService",
    "AsyncTransaction",
    "ConfigError",
    "ConflictError",
    "DatabaseConfig",
    "DatabaseError",
    "DatabaseService",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "Deployment",
    "DeploymentDetails",
    "DeploymentStatus",
    "EmbeddedServerError",
    "EncryptionError",
    "HealthDetails",
    "HealthReport",
    "MigrationError",
    "MigrationIntegrityError",
    "MigrationLockError",
    "NewDeployment",
    "NotFoundError",
    "Page",
    "PermissionDeniedError",
    "PlanType",
    "PoolExhaustedError",
    "PoolInfo",
    "Project",
    "ProjectWithUser",
    "QueryError",
    "ReplicaHealth",
    "SchemaNotReadyError",
    "ScopedService",
    "SystemStats",
    "Transaction",
    "User",
    "ValidationError",
    "converter",
    "to_dict",
]
