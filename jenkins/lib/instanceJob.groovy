// What the five instance jobs (jenkins/aws_cli_jobs/) share. Loaded from the checkout with
// `load 'jenkins/lib/instanceJob.groovy'`, which is core Pipeline: no shared library to configure.
// Every stage is one script of scripts/jenkins/, so a build runs exactly what test/ops/jenkins-jobs.test.ts
// runs, and the same scripts work by hand.

/** The Jenkins credential every instance job calls the API with (Username with password: URL and token). */
String credentialsId() {
    return 'ec2-creator-api'
}

/** Runs scripts/jenkins/SCRIPT with the API's base URL and token bound as API_URL and API_TOKEN. */
void runStage(String script) {
    withCredentials([usernamePassword(credentialsId: credentialsId(),
            usernameVariable: 'API_URL', passwordVariable: 'API_TOKEN')]) {
        sh "bash scripts/jenkins/${script}"
    }
}

/** The instance types the server allows, one a line, as the launch policy stage saved them ('' if not read). */
String allowedInstanceTypes() {
    String file = 'results/instance-types.txt'
    return fileExists(file) ? readFile(file).trim() : ''
}

/** Archives the API's answers and names the build after its instance; for any outcome. */
void finish() {
    archiveArtifacts artifacts: 'results/*.json', allowEmptyArchive: true
    describe()
}

/** Sets the build's description to the instance id and name, once they are known. */
void describe() {
    String description = sh(returnStdout: true, script: 'bash scripts/jenkins/build_description.sh').trim()
    if (description) {
        currentBuild.description = description
    }
}

/** Repeats the API's problem detail at the end of a failed build's log, where people look first. */
void reportFailure() {
    sh 'bash scripts/jenkins/report_problem.sh'
}

return this
