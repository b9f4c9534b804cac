import { failureInjectionSuite } from './failure-suite.ts';

failureInjectionSuite('heap');
